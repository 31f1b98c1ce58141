"""``wa-onboarding doctor``: the Meta setup self-test (also ``GET /api/admin/whatsapp/doctor``).

:func:`run_doctor` runs every group of checks in order and returns their
:class:`~wa_core.doctor.model.Check` answers: settings (:mod:`.local`), database, Redis, the
onboarding page, then the Meta app (:mod:`.meta_app`: app token, webhook subscription and
fields), the callback URL round trips (:mod:`.callback`) and each stored business token.
Checks that need Dagster are passed in as ``extra`` (wa_core never imports Dagster; the CLI
runs :mod:`wa_pipelines.doctor` in a subprocess). docs/meta-setup.md maps each Meta setup step
to the check that verifies it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import httpx

from wa_core.doctor import callback, local, meta_app
from wa_core.doctor.model import Check, CheckGroup, exit_code, run_group, skip
from wa_core.settings import Settings


class _Unusable:
    """Stands in for a Graph client that could not be built: every call raises its error (the
    Meta check groups turn it into failed checks); ``close`` does nothing."""

    def __init__(self, exc: Exception) -> None:
        self._exc = exc

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise self._exc


def run_doctor(
    settings: Settings,
    *,
    graph: Any = None,
    http: httpx.Client | None = None,
    extra: Sequence[tuple[str, CheckGroup]] = (),
    timeout: float = 10.0,
) -> list[Check]:
    """Every doctor check, in order (a list of :class:`Check`; nothing raises).

    ``graph``: a :class:`~wa_core.meta.graph.client.GraphClient` (default: from ``settings``,
    no retries, ``timeout`` seconds); ``http``: the client of the callback round trips
    (default: httpx, ``timeout`` seconds, no redirects followed); ``extra``: ``(name, group)``
    pairs run after Redis (the Dagster check). The only write is the signed test delivery,
    which the receiver stores (see :mod:`wa_core.doctor.callback`).
    """
    from wa_core.db.engine import create_sync_engine
    from wa_core.meta.crypto import TokenCipher
    from wa_core.meta.graph.client import GraphClient

    checks: list[Check] = []
    own_graph = graph is None
    if graph is None:
        try:
            graph = GraphClient.from_settings(settings, timeout=timeout, max_retries=0)
        except Exception as exc:  # e.g. a control character in GRAPH_API_BASE_URL: each Meta check fails
            graph = _Unusable(exc)
    own_http = http is None
    http = http or httpx.Client(timeout=timeout, follow_redirects=False, headers={"User-Agent": callback.USER_AGENT})
    found: dict[str, Any] = {}
    engine = None
    try:
        checks += run_group("settings", lambda: local.settings_checks(settings))
        database = run_group("database", lambda: local.database_checks(settings))
        checks += database
        if all(c.status == "ok" for c in database):
            engine = create_sync_engine(settings)
        checks += run_group("redis", lambda: local.redis_checks(settings))
        for name, group in extra:
            checks += run_group(name, group)
        checks += run_group("onboarding_page", lambda: local.page_checks(settings))
        checks += run_group("meta.app_token", lambda: meta_app.app_token_checks(settings, graph))
        checks += run_group("meta.webhook_subscription", lambda: meta_app.subscription_checks(settings, graph, found))
        checks += run_group("callback.verify", lambda: callback.verify_checks(settings, http, found))
        checks += run_group("callback.signed_delivery", lambda: callback.delivery_checks(settings, http, engine, found))
        if engine is not None:
            cipher = lambda: TokenCipher.from_hex(settings.token_encryption_key, settings.token_encryption_previous_keys)  # noqa: E731
            checks += run_group("business_tokens", lambda: meta_app.business_token_checks(settings, engine, graph, cipher))
        else:
            checks.append(skip("business_tokens", "the database check failed: stored tokens cannot be read"))
    finally:
        if engine is not None:
            engine.dispose()
        if own_graph:
            graph.close()
        if own_http:
            http.close()
    return checks


__all__ = ["Check", "exit_code", "run_doctor"]
