"""Dagster wiring for everything after landing, in Dagster's ``dg`` project layout: the one
``Definitions`` is :data:`wa_pipelines.definitions.defs`, built from the ``defs/`` folder."""
