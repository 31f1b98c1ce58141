"""What the main job prints once the traffic is processed: what is stored, the
landing-to-processed latency, where to look, and (with ``--exit-when-done``) the dashboards'
last materialisations and the open alerts."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from wa_core.db.engine import create_sync_engine
from wa_core.db.schema import as_utc, dashboard_snapshots, ops_alerts, whatsapp_webhook_logs
from wa_core.reporting.summary import format_summary, stored_summary
from wa_core.settings import Settings


def stored_report(settings: Settings) -> str:
    """Everything stored in the app database (earlier runs included) and the latency line."""
    engine = create_sync_engine(settings)
    try:
        with engine.connect() as conn:
            summary = stored_summary(conn)
    finally:
        engine.dispose()
    return "\n".join(
        ["\nstored (everything in this database, earlier runs included):", format_summary(summary), f"  {latency_figures(settings)}"]
    )


def latency_figures(settings: Settings) -> str:
    """Landing-to-processed latency of processed rows: p50/p95/max in seconds."""
    engine = create_sync_engine(settings)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(whatsapp_webhook_logs.c.received_at, whatsapp_webhook_logs.c.processed_at).where(
                    whatsapp_webhook_logs.c.processed_at.is_not(None)
                )
            ).all()
    finally:
        engine.dispose()
    waits = sorted((p - r).total_seconds() for r, p in rows if p and r)
    if not waits:
        return "no processed webhooks"
    pick = lambda q: waits[min(len(waits) - 1, int(len(waits) * q))]  # noqa: E731
    return f"landing→processed over {len(waits)} webhooks: p50 {pick(0.5):.2f}s, p95 {pick(0.95):.2f}s, max {waits[-1]:.2f}s"



def where_to_look(host: str, dagster_port: int, base: str, log_dir: Path) -> str:
    """The addresses of the Dagster UI and the receiver, the logs folder and the status command."""
    return (
        f"\nwhere to look:\n"
        f"  Dagster UI        http://{host}:{dagster_port}  (Runs: process_webhooks; Assets: lineage to the dashboards)\n"
        f"  receiver          {base}/docs, {base}/readyz\n"
        f"  logs              {log_dir}\n"
        f"  stored rows       wa-onboarding status"
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

