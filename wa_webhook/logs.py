"""Logging set-up shared by the receiver, the CLI and the pipelines."""

from __future__ import annotations

import logging
import os


def configure_logging(level: str | None = None) -> None:
    """Configure the root logger once (level from ``LOG_LEVEL``, default INFO).

    Messages never carry tokens, secrets, message bodies or phone numbers at INFO.
    """
    root = logging.getLogger()
    if getattr(root, "_wa_configured", False):
        return
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("httpx", "httpcore", "alembic.runtime.plugins", "alembic.runtime.migration"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    root._wa_configured = True  # type: ignore[attr-defined]
