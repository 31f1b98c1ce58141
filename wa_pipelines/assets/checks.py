"""Asset checks guarding the dashboards (filled by the operations work)."""

from __future__ import annotations

DASHBOARD_CHECKS: list = []
