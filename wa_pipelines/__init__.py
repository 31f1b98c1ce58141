"""Dagster wiring for everything after landing, in Dagster's ``dg`` project layout: the one
``Definitions`` is :data:`wa_pipelines.definitions.defs`, built from the ``defs/`` folder."""

import warnings

# Dagster copies a sensor (SensorDefinition.with_attributes, when Definitions bind its jobs) by
# passing its ``owners`` on, an empty list when none were given, which Dagster's @beta_param
# then reports as a use of the beta ``owners`` parameter: once per sensor, in every process
# that loads the definitions. We set no owners; only that message is silenced.
warnings.filterwarnings(
    "ignore", message=r"Parameter `owners` of initializer `SensorDefinition.__init__` is currently in beta", module=r"dagster\."
)
