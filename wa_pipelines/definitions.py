"""The one ``Definitions`` object (``dg`` layout): everything under :mod:`wa_pipelines.defs` is
found by :func:`dagster.load_from_defs_folder`, and the resources are chosen here, in one place
(their settings come from the environment: :class:`wa_core.settings.Settings`)."""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions, load_from_defs_folder

from wa_pipelines.resources import AppDatabase, MetaGraph, TokenKeys

defs = Definitions.merge(
    load_from_defs_folder(path_within_project=Path(__file__).parent),
    Definitions(resources={"app_db": AppDatabase(), "meta_graph": MetaGraph(), "token_keys": TokenKeys()}),
)
