"""A small Dagster code location for the stop test of tests/dev/test_up.py, launched like every
run of ``up`` (a sensor's request, the daemon's queue, the default run launcher):

- ``until_terminated``: one run that runs until it is terminated, like the long-lived
  processing and event-delivery runs;
- ``slow_start``: requested once the file named by ``STOP_TEST_GATE`` exists; its run worker
  waits at import while that file exists (its run stays STARTING), like a run whose worker is
  still loading the code location on a busy machine, and writes ``<gate>.waiting`` meanwhile.
"""

from __future__ import annotations

import multiprocessing
import os
import time

from dagster import DefaultSensorStatus, Definitions, RunRequest, in_process_executor, job, op, sensor

GATE = os.environ.get("STOP_TEST_GATE", "")

if GATE and multiprocessing.parent_process() is not None and os.path.exists(GATE):
    # a run worker (spawned by the code server; the code server itself is not) started while
    # the gate is closed: hold the run in STARTING until the test opens it
    open(f"{GATE}.waiting", "w").close()
    while os.path.exists(GATE):
        time.sleep(0.1)


@op
def loop_until_terminated() -> None:
    while True:
        time.sleep(0.2)


@job(executor_def=in_process_executor)  # like the project's jobs: no step subprocess
def until_terminated() -> None:
    loop_until_terminated()


@op
def nothing() -> None:
    pass


@job(executor_def=in_process_executor)
def slow_start() -> None:
    nothing()


@sensor(jobs=[until_terminated, slow_start], minimum_interval_seconds=1, default_status=DefaultSensorStatus.RUNNING)
def stop_test_sensor(_context) -> list[RunRequest]:
    """One ``until_terminated`` run, then one ``slow_start`` run once the gate file exists (the
    run keys make each a single run)."""
    requests = [RunRequest(run_key="until-terminated", job_name="until_terminated")]
    if GATE and os.path.exists(GATE):
        requests.append(RunRequest(run_key="slow-start", job_name="slow_start"))
    return requests


defs = Definitions(jobs=[until_terminated, slow_start], sensors=[stop_test_sensor])
