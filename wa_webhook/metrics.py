"""Prometheus metrics of the receiver (``GET /metrics``).

Per process: with several uvicorn workers, set ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's
multiprocess mode) or scrape each worker.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

WEBHOOK_REQUESTS = Counter(
    "wa_webhook_requests_total",
    "Webhook POSTs by outcome (landed, bad_signature, too_large, body_timeout, client_disconnect, busy, no_secret, db_unavailable).",
    ["outcome"],
)
SIGNATURE_FAILURES = Counter(
    "wa_webhook_signature_failures_total", "Deliveries refused for their X-Hub-Signature-256, by reason.", ["reason"]
)
LANDING_SECONDS = Histogram(
    "wa_webhook_landing_seconds",
    "Time to store and commit one webhook (seconds).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BODY_BYTES = Histogram(
    "wa_webhook_body_bytes",
    "Size of landed webhook bodies (bytes).",
    buckets=(512, 1024, 2048, 4096, 16384, 65536, 262144, 1048576, 3145728),
)
DATABASE_ERRORS = Counter("wa_webhook_database_errors_total", "Webhooks not stored because the database failed (answered 503).")
HEADER_TIMEOUTS = Counter(
    "wa_http_header_timeouts_total",
    "Connections whose request headers were not received within HTTP_HEADER_TIMEOUT_SECONDS (answered 408 and closed).",
)
BODY_TIMEOUTS = Counter(
    "wa_http_body_timeouts_total",
    "Requests whose body was not received within WEBHOOK_BODY_TIMEOUT_SECONDS after their headers (answered 408 and closed; `wa-onboarding serve`).",
)
HEADERS_TOO_LARGE = Counter(
    "wa_http_headers_too_large_total",
    "Connections whose request head passed 64 kB (answered 431 and closed; `wa-onboarding serve`).",
)
