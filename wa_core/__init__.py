"""The domain: settings, database, Meta (Graph client, signatures, token crypto), onboarding,
processing, alerts and reporting. Imports neither FastAPI nor Dagster, nor the packages that do
(``wa_webhook``, ``wa_pipelines``, ``wa_dev``); the import contract in ``pyproject.toml`` says so."""
