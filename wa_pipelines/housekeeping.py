"""Housekeeping of Dagster's own storage (filled by the operations work)."""

from __future__ import annotations

HOUSEKEEPING_JOBS: list = []
HOUSEKEEPING_SCHEDULES: list = []
