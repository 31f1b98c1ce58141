"""The nightly business-token check per phone number."""


from datetime import timedelta

from dagster import DefaultScheduleStatus, OpExecutionContext, ScheduleDefinition, in_process_executor, job, op

from wa_pipelines.resources import AppDatabase, MetaGraph, TokenKeys


@op(description="debug_token every stored business token and record its health per phone number.")
def check_token_health_op(context: OpExecutionContext, app_db: AppDatabase, meta_graph: MetaGraph, token_keys: TokenKeys) -> dict:
    from wa_core.token_health import check_all

    with meta_graph.client() as graph:
        counts = check_all(app_db.get_engine(), graph, token_keys.cipher(), timedelta(days=app_db.settings.token_expiring_soon_days))
    context.log.info(f"token health: {dict(counts)}")
    context.add_output_metadata({state: n for state, n in counts.items()})
    return dict(counts)


@job(name="check_token_health", executor_def=in_process_executor, tags={"wa/queue": "maintenance"})
def check_token_health_job():
    """Nightly: is every business token still valid, and for how long?"""
    check_token_health_op()


token_health_schedule = ScheduleDefinition(
    name="check_token_health_nightly",
    job=check_token_health_job,
    cron_schedule="0 2 * * *",
    execution_timezone="America/Sao_Paulo",
    default_status=DefaultScheduleStatus.RUNNING,
)
