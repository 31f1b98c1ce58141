"""The Dagster part of ``wa-onboarding doctor``: the daemon's heartbeats and our sensors.

Run as ``python -m wa_pipelines.doctor``: prints a JSON list of checks (the shape of
:class:`wa_core.doctor.model.Check`) and exits 0. ``wa-onboarding doctor`` (wa_webhook, which
never imports Dagster) runs it in a subprocess. It reads the Dagster instance of
``DAGSTER_HOME`` (its ``dagster.yaml``: run, event-log and schedule storage) with Dagster's
API: :meth:`DagsterInstance.get_daemon_statuses` and the sensors' instigator states and ticks.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from wa_core.doctor.model import Check, fail, ok, skip, warn

#: a sensor whose last tick is older than this (seconds) is reported stalled
TICK_STALE_SECONDS = 300.0
_DAEMON_FIX = "start the daemon (`dagster-daemon run`, or `bin/up`) with the same DAGSTER_HOME as the webserver"


def dagster_checks(home: str | None = None) -> list[Check]:
    """``dagster.daemon`` (every required daemon healthy) and ``dagster.sensors`` (each sensor
    of :data:`wa_pipelines.definitions.defs` running with a recent tick). ``home``: the
    ``DAGSTER_HOME`` (default the environment's); unset or missing → ``skip`` with why."""
    home = home or os.environ.get("DAGSTER_HOME")
    if not home:
        return [skip("dagster", "DAGSTER_HOME is not set: the Dagster instance cannot be read",
                     "run the doctor with the DAGSTER_HOME of the deployment's daemon")]
    if not (Path(home) / "dagster.yaml").exists():
        return [skip("dagster", f"no dagster.yaml in DAGSTER_HOME {home}", "point DAGSTER_HOME at the deployment's Dagster home")]
    os.environ["DAGSTER_HOME"] = home
    from dagster import DagsterInstance

    try:
        instance = DagsterInstance.get()
    except Exception as exc:  # storage unreachable (Postgres down, wrong DAGSTER_POSTGRES_URL…)
        return [skip("dagster", f"the Dagster instance cannot be opened: {type(exc).__name__}: {str(exc)[:200]}",
                     "check DAGSTER_HOME's dagster.yaml and its storage (DAGSTER_POSTGRES_URL)")]
    try:
        return [*_daemon(instance), *_sensors(instance)]
    finally:
        instance.dispose()


def _daemon(instance) -> list[Check]:
    statuses = instance.get_daemon_statuses()
    down = sorted(name for name, status in statuses.items() if status.required and not status.healthy)
    if not statuses:
        return [fail("dagster.daemon", "no daemon heartbeat recorded", _DAEMON_FIX)]
    if down:
        ages = []
        for name in down:
            beat = statuses[name].last_heartbeat
            ages.append(f"{name} ({'never' if beat is None else f'{time.time() - beat.timestamp:.0f} s ago'})")
        return [fail("dagster.daemon", "daemon not healthy: " + ", ".join(ages), _DAEMON_FIX)]
    return [ok("dagster.daemon", f"{len(statuses)} daemons healthy: {', '.join(sorted(statuses))}")]


def _sensors(instance) -> list[Check]:
    from dagster import DefaultSensorStatus
    from dagster._core.scheduler.instigation import InstigatorStatus, InstigatorType, TickStatus

    from wa_pipelines.definitions import defs

    sensors = defs.get_repository_def().sensor_defs
    states = {s.instigator_name: s for s in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)}
    checks: list[Check] = []
    now = time.time()
    for sensor in sorted(sensors, key=lambda s: s.name):
        name = f"dagster.sensor.{sensor.name}"
        state = states.get(sensor.name)
        running = state.status in (InstigatorStatus.RUNNING, InstigatorStatus.DECLARED_IN_CODE) if state else (
            sensor.default_status == DefaultSensorStatus.RUNNING)
        if state is not None and state.status == InstigatorStatus.DECLARED_IN_CODE:
            running = sensor.default_status == DefaultSensorStatus.RUNNING
        if not running:
            checks.append(fail(name, "stopped", f"start it in the Dagster UI (Automation) or `dagster sensor start {sensor.name}`"))
            continue
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=1) if state else []
        if not ticks:
            checks.append(warn(name, "running, but no tick recorded yet", "wait for the daemon's first tick; " + _DAEMON_FIX))
        elif now - ticks[0].timestamp > TICK_STALE_SECONDS:
            checks.append(fail(name, f"last tick {now - ticks[0].timestamp:.0f} s ago", _DAEMON_FIX))
        elif ticks[0].status == TickStatus.FAILURE:
            error = getattr(ticks[0], "error", None)
            message = (getattr(error, "message", "") or "").strip().splitlines()[:1]
            checks.append(fail(name, f"last tick failed: {message[0][:300] if message else 'no message'}",
                               "open the sensor in the Dagster UI (Automation) for the full error"))
        else:
            checks.append(ok(name, f"running, last tick {now - ticks[0].timestamp:.0f} s ago ({ticks[0].status.value})"))
    return checks


def main() -> int:
    """Print :func:`dagster_checks` as JSON on stdout (logging stays on stderr)."""
    print(json.dumps([c.as_dict() for c in dagster_checks()]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
