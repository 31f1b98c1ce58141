"""Dagster definitions by area, loaded by :func:`dagster.load_from_defs_folder`:
``ingest`` (processing), ``onboarding``, ``numbers`` (token health), ``dashboards`` (assets and
checks), ``operations`` (dead letters, retention, Dagster housekeeping), ``alerting``."""
