"""The six dashboard assets, made by one factory from :data:`wa_core.reporting.dashboards.DASHBOARDS`.

``org_whatsapp_status``, ``onboarding_timeline``, ``failed_webhooks``, ``token_health``,
``webhook_lag`` and ``number_health``, refreshed by the ``refresh_dashboards`` job (every 15 minutes and after
processing runs). The figures are computed in :mod:`wa_core.reporting` (testable without
Dagster); each asset records the dashboard's totals as materialisation metadata (numbers,
so the Dagster UI plots them), its table as Markdown and its rows as JSON, and upserts the
payload into ``dashboard_snapshots`` (:func:`~wa_core.reporting.snapshots.save_snapshot`)
for the admin API.
"""

from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, MaterializeResult, MetadataValue, asset

from wa_core.reporting.dashboards import DASHBOARDS, DashboardSpec
from wa_core.reporting.snapshots import Dashboard, save_snapshot
from wa_pipelines.defs.ingest.tables import EXTERNAL_TABLES, PROCESSED_TABLES
from wa_pipelines.resources import AppDatabase

#: at most this many rows go into the metadata of one materialisation (the snapshot keeps all)
METADATA_ROWS_MAX = 200

#: the app tables declared as assets (tables.py); dashboards depend only on keys that exist
_TABLE_KEYS = {spec.key for spec in EXTERNAL_TABLES} | {AssetKey(name) for name in PROCESSED_TABLES}


def table_deps(*names: str) -> list[AssetKey]:
    """Asset keys of the tables a dashboard reads, keeping only tables declared as assets in
    :mod:`wa_pipelines.defs.ingest.tables` (a table declared there later joins the lineage
    without touching this module)."""
    return [AssetKey(name) for name in names if AssetKey(name) in _TABLE_KEYS]


def metadata_for(dashboard: Dashboard, table_md: str, table_name: str) -> dict[str, Any]:
    """Materialisation metadata of a dashboard: each numeric total as a number (the UI plots
    it), dict totals as JSON, the table as Markdown and the rows as JSON (both cut at
    :data:`METADATA_ROWS_MAX` rows; the snapshot keeps them all). None totals are left out."""
    meta: dict[str, Any] = {}
    for name, value in dashboard.totals.items():
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)):
            meta[name] = value
        elif isinstance(value, dict):
            meta[name] = MetadataValue.json(value)
    payload = dashboard.payload()
    meta[table_name] = MetadataValue.md(table_md)
    meta["rows"] = MetadataValue.json(payload["rows"][:METADATA_ROWS_MAX])
    if len(payload["rows"]) > METADATA_ROWS_MAX:
        meta["rows_truncated"] = True
    return meta


def dashboard_asset(spec: DashboardSpec) -> AssetsDefinition:
    """The asset of one dashboard: compute it, store its snapshot, return its metadata."""

    @asset(name=spec.key, group_name="dashboards", deps=table_deps(*spec.tables), kinds={"sql"}, description=spec.description)
    def _dashboard(context: AssetExecutionContext, app_db: AppDatabase) -> MaterializeResult:
        engine = app_db.get_engine()
        with engine.connect() as conn:
            dashboard = spec.compute(conn, app_db.settings)
        with engine.begin() as conn:
            save_snapshot(conn, spec.key, dashboard.payload(), context.run.run_id)
        context.log.info(f"{spec.key}: {len(dashboard.rows)} rows; snapshot saved")
        table = spec.markdown(dashboard.rows[:METADATA_ROWS_MAX])
        return MaterializeResult(metadata=metadata_for(dashboard, table, spec.table_name))

    return _dashboard


#: every dashboard asset, in the order the lineage graph shows them
DASHBOARD_ASSETS = [dashboard_asset(spec) for spec in DASHBOARDS]
org_whatsapp_status, onboarding_timeline, failed_webhooks, token_health, webhook_lag, number_health = DASHBOARD_ASSETS
