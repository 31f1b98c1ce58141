"""Dagster definitions for everything after landing (``dagster ... -m wa_pipelines``)."""

from wa_pipelines.definitions import defs

__all__ = ["defs"]
