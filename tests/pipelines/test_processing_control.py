"""The ``pause_processing`` / ``resume_processing`` jobs: rows of a paused organization or WABA
wait, the resume lets them be processed, none is lost; ids as strings or numbers; a malformed or
unknown target fails the run with a clear message and changes nothing."""

from __future__ import annotations

import pytest
from dagster import DagsterInstance, Failure
from sqlalchemy.engine import Engine

from tests.core.test_fairness import land_many, text_body
from tests.helpers import ACME_PHONE, ACME_WABA, GLOBEX_PHONE, GLOBEX_WABA, bind_fixture_numbers, rows
from wa_core.db.schema import processing_org_controls, processing_waba_controls, whatsapp_messages, whatsapp_webhook_logs
from wa_core.processing.runner import run_processing
from wa_core.settings import Settings
from wa_pipelines.definitions import defs


def run(job_name: str, instance: DagsterInstance, **config) -> dict:
    op = job_name + "_op"
    result = defs.resolve_job_def(job_name).execute_in_process(instance=instance, run_config={"ops": {op: {"config": config}}})
    assert result.success
    return result.output_for_node(op)


def waiting(engine: Engine, waba_id: str) -> int:
    logs = whatsapp_webhook_logs.c
    return len(rows(engine, whatsapp_webhook_logs, logs.waba_id == waba_id, logs.status == "pending"))


def test_pause_and_resume_jobs_for_an_organization_and_a_waba(engine: Engine, settings: Settings) -> None:
    bind_fixture_numbers(engine)
    land_many(engine, [text_body(ACME_WABA, ACME_PHONE) for _ in range(3)] + [text_body(GLOBEX_WABA, GLOBEX_PHONE) for _ in range(3)])
    with DagsterInstance.ephemeral() as instance:
        assert run("pause_processing", instance, organization="acme", reason="audit")["paused"] is True
        assert run("pause_processing", instance, waba_id=int(GLOBEX_WABA))["waba_id"] == GLOBEX_WABA  # a number
        assert run("pause_processing", instance, organization="acme")["changed"] is False  # idempotent
        assert run_processing(engine, settings, idle_exit_seconds=0).webhooks == 0
        land_many(engine, [text_body(ACME_WABA, ACME_PHONE)])
        assert (waiting(engine, ACME_WABA), waiting(engine, GLOBEX_WABA)) == (4, 3)

        state = run("resume_processing", instance, waba_id=GLOBEX_WABA)
        assert (state["paused"], state["changed"], state["waiting"]) == (False, True, 3)
        assert run_processing(engine, settings, idle_exit_seconds=0).webhooks == 3
        assert run("resume_processing", instance, organization="acme")["waiting"] == 4
        assert run_processing(engine, settings, idle_exit_seconds=0).webhooks == 4
    assert {r.status for r in rows(engine, whatsapp_webhook_logs)} == {"processed"}
    assert len(rows(engine, whatsapp_messages)) == 7


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"organization": "nobody"}, "no organization"),
        ({"waba_id": "100000000000888"}, "no WABA"),
        ({"waba_id": "12ab"}, "waba_id"),
        ({"waba_id": [1, 2]}, "waba_id"),
        ({}, "exactly one"),
        ({"organization": "acme", "waba_id": ACME_WABA}, "exactly one"),
    ],
)
def test_a_malformed_or_unknown_target_fails_the_run_and_changes_nothing(engine: Engine, settings: Settings, config: dict, message: str) -> None:
    bind_fixture_numbers(engine)
    with DagsterInstance.ephemeral() as instance:
        with pytest.raises(Failure, match=message):
            run("pause_processing", instance, **config)
    assert rows(engine, processing_org_controls) == [] and rows(engine, processing_waba_controls) == []


def test_assign_waba_takes_the_waba_id_as_a_number_as_the_launchpad_writes_it(engine: Engine) -> None:
    """``waba_id: 100000000000777`` typed in the launchpad is an int in the run config: it binds
    the WABA like the quoted string does; a malformed or unknown target fails with its reason."""
    from wa_core.db.schema import whatsapp_connections

    bind_fixture_numbers(engine)
    with DagsterInstance.ephemeral() as instance:
        result = run("assign_waba", instance, waba_id=100000000000777, organization="acme")
        assert result["replayed"] == []
        assert run("assign_waba", instance, waba_id="100000000000777", organization="acme")["connection_id"] == result["connection_id"]
        with pytest.raises(Failure, match="waba_id"):
            run("assign_waba", instance, waba_id="12ab", organization="acme")
        with pytest.raises(Failure, match="no organization"):
            run("assign_waba", instance, waba_id=100000000000778, organization="nobody")
    assert "100000000000777" in {r.waba_id for r in rows(engine, whatsapp_connections)}
