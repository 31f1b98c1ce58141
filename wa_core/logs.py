"""Logging set-up shared by the receiver, the CLI and the pipelines.

``LOG_FORMAT=json`` writes one JSON object per line (python-json-logger: time, level,
logger, message and any ``extra`` such as ``request_id``), for production log shipping;
``text`` (the default) is for people. At INFO and above no line carries tokens, secrets,
message bodies or phone numbers; handler tracebacks are DEBUG only.
"""

from __future__ import annotations

import logging


def configure_logging(level: str | None = None, fmt: str | None = None) -> None:
    """Configure the root logger once: ``level``/``fmt`` when given, else the settings'
    ``LOG_LEVEL`` (default INFO) and ``LOG_FORMAT`` (text|json), read like every setting
    (environment or ``.env``). Settings that do not validate fall back to the defaults here:
    the command that needs them reports the configuration error itself."""
    root = logging.getLogger()
    if getattr(root, "_wa_configured", False):
        return
    if level is None or fmt is None:
        from pydantic import ValidationError

        from wa_core.settings import get_settings

        try:
            settings = get_settings()
            level, fmt = level or settings.log_level, fmt or settings.log_format
        except ValidationError:
            level, fmt = level or "INFO", fmt or "text"
    level, fmt = level.upper(), fmt.lower()
    handler = logging.StreamHandler()
    if fmt == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", rename_fields={"asctime": "time", "levelname": "level", "name": "logger"})
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "alembic.runtime.plugins", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root._wa_configured = True  # type: ignore[attr-defined]
