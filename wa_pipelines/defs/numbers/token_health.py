"""The nightly business-token check per phone number."""


from datetime import timedelta

from dagster import OpExecutionContext, op

from wa_pipelines.defs.factories import one_op_job, running_schedule
from wa_pipelines.resources import AppDatabase, MetaGraph, TokenKeys


@op(description="debug_token every stored business token and record its health per phone number.")
def check_token_health_op(context: OpExecutionContext, app_db: AppDatabase, meta_graph: MetaGraph, token_keys: TokenKeys) -> dict:
    from wa_core.token_health import check_all

    with meta_graph.client() as graph:
        counts = check_all(app_db.get_engine(), graph, token_keys.cipher(), timedelta(days=app_db.settings.token_expiring_soon_days))
    context.log.info(f"token health: {dict(counts)}")
    context.add_output_metadata({state: n for state, n in counts.items()})
    return dict(counts)


check_token_health_job = one_op_job(
    "check_token_health", check_token_health_op, "Nightly: is every business token still valid, and for how long?"
)

token_health_schedule = running_schedule("check_token_health_nightly", check_token_health_job, "0 2 * * *", "America/Sao_Paulo")
