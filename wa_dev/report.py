"""What the main job prints once the traffic is processed: what is stored, the
landing-to-processed latency, where to look, and (with ``--exit-when-done``) the dashboards'
last materialisations and the open alerts."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

from wa_core.db.engine import create_sync_engine
from wa_core.db.schema import as_utc, dashboard_snapshots, ops_alerts, whatsapp_webhook_logs
from wa_core.reporting.summary import format_summary, stored_summary
from wa_core.settings import Settings


def stored_report(settings: Settings, since: float | None = None, run_windows: list[tuple[float, float]] | None = None) -> str:
    """Everything stored in the app database (earlier runs included) and the latency lines
    of the webhooks received since ``since`` (see :func:`latency_figures`)."""
    engine = create_sync_engine(settings)
    try:
        with engine.connect() as conn:
            summary = stored_summary(conn)
    finally:
        engine.dispose()
    return "\n".join(
        ["\nstored (everything in this database, earlier runs included):", format_summary(summary),
         latency_figures(settings, since, run_windows)]
    )


def _percentiles(waits: list[float]) -> str:
    pick = lambda q: waits[min(len(waits) - 1, int(len(waits) * q))]  # noqa: E731
    return f"p50 {pick(0.5):.2f}s, p95 {pick(0.95):.2f}s, max {waits[-1]:.2f}s"


def latency_figures(settings: Settings, since: float | None = None, run_windows: list[tuple[float, float]] | None = None) -> str:
    """Landing-to-processed latency (p50/p95/max, seconds) of the processed webhooks received
    since ``since`` (Unix seconds, None = all). With ``run_windows`` (when a processing run
    was up, ``(start, end)`` Unix seconds) in two parts: the webhooks that landed while a run
    was up (the production case: runs stay alive) and those that landed while none was, which
    waited for a run's launch (the first one, and with ``--exit-when-done`` each after an idle
    exit: ~10 s on a small machine, more under load)."""
    logs = whatsapp_webhook_logs.c
    query = sa.select(logs.received_at, logs.processed_at).where(logs.processed_at.is_not(None))
    if since is not None:
        query = query.where(logs.received_at >= datetime.fromtimestamp(since, timezone.utc))
    engine = create_sync_engine(settings)
    try:
        with engine.connect() as conn:
            rows = [(as_utc(r).timestamp(), as_utc(p).timestamp()) for r, p in conn.execute(query).all() if r and p]
    finally:
        engine.dispose()
    if not rows:
        return "  landing→processed: no webhooks processed" + (" since this start" if since is not None else "")
    scope = "this start's" if since is not None else "all"
    everything = sorted(p - r for r, p in rows)
    lines = [f"  landing→processed, {scope} {len(rows)} webhooks: {_percentiles(everything)}"]
    if run_windows is not None:
        up = lambda t: any(start <= t <= end for start, end in run_windows)  # noqa: E731
        alive = sorted(p - r for r, p in rows if up(r))
        launch = sorted(p - r for r, p in rows if not up(r))
        if alive:
            lines.append(f"    {len(alive):>5} landed while a processing run was up (as in production): {_percentiles(alive)}")
        if launch:
            lines.append(f"    {len(launch):>5} landed while none was and waited for a run's launch: {_percentiles(launch)}")
    return "\n".join(lines)


def dashboards_refreshed_since(settings: Settings, since: float) -> bool:
    """True when every dashboard (:data:`wa_core.reporting.dashboards.DASHBOARDS`) has a
    snapshot computed after ``since`` (Unix seconds): a whole refresh has landed."""
    from wa_core.reporting.dashboards import DASHBOARDS

    engine = create_sync_engine(settings)
    try:
        with engine.connect() as conn:
            fresh = conn.execute(
                sa.select(sa.func.count(sa.distinct(dashboard_snapshots.c.asset_key))).where(
                    dashboard_snapshots.c.computed_at >= datetime.fromtimestamp(since, timezone.utc)
                )
            ).scalar_one()
    finally:
        engine.dispose()
    return fresh >= len(DASHBOARDS)


def where_to_look(host: str, dagster_port: int, base: str, log_dir: Path) -> str:
    """The addresses of the Dagster UI and the receiver, the logs folder and the status command."""
    return (
        f"\nwhere to look:\n"
        f"  Dagster UI        http://{host}:{dagster_port}  (Runs: process_webhooks; Assets: lineage to the dashboards)\n"
        f"  receiver          {base}/docs, {base}/readyz\n"
        f"  logs              {log_dir}\n"
        f"  stored rows       .venv/bin/wa-onboarding status  (from the repository root)"
    )


def operations_report(settings: Settings) -> str:
    """What an operator would see after the runs: when each dashboard was last materialised,
    and the alerts still open (``ops_alerts``), one line each."""
    engine = create_sync_engine(settings)
    try:
        with engine.connect() as conn:
            snapshots = conn.execute(sa.select(dashboard_snapshots.c.asset_key, dashboard_snapshots.c.computed_at)).all()
            alerts = conn.execute(
                sa.select(ops_alerts.c.fingerprint, ops_alerts.c.severity, ops_alerts.c.occurrences)
                .where(ops_alerts.c.resolved_at.is_(None))
                .order_by(ops_alerts.c.fingerprint)
            ).all()
    finally:
        engine.dispose()
    lines = ["\ndashboards (materialised by refresh_dashboards, with their asset checks):"]
    lines += [f"  {key:<22} at {as_utc(at):%H:%M:%S} UTC" for key, at in sorted(snapshots)] or ["  none yet"]
    lines.append("open alerts (also in the log as ALERT lines; Slack/Sentry when configured):")
    lines += [f"  {fp} [{severity}] ×{n}" for fp, severity, n in alerts] or ["  none"]
    return "\n".join(lines)

