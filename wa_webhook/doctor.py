"""The operator side of the doctor (:mod:`wa_core.doctor`): the Dagster checks run in a
subprocess (``python -m wa_pipelines.doctor``; wa_webhook never imports Dagster) and the
human output of ``wa-onboarding doctor``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable

from wa_core.doctor.model import Check, skip

#: longest wait for the Dagster subprocess (seconds; importing Dagster takes a few on a small machine)
DAGSTER_TIMEOUT_SECONDS = 120.0
_COLORS = {"ok": "\033[32m", "warn": "\033[33m", "fail": "\033[31m", "skip": "\033[2m"}
_MARKS = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "skip": "skip"}


def dagster_checks(timeout: float = DAGSTER_TIMEOUT_SECONDS) -> list[Check]:
    """The Dagster daemon and sensor checks of :mod:`wa_pipelines.doctor`, run with this
    process's environment (``DAGSTER_HOME``); ``skip`` with the reason when DAGSTER_HOME is
    unset, the subprocess fails, or it takes longer than ``timeout`` seconds (it is killed)."""
    if not os.environ.get("DAGSTER_HOME"):
        return [skip("dagster", "DAGSTER_HOME is not set: the Dagster instance cannot be read",
                     "run the doctor with the DAGSTER_HOME of the deployment's daemon")]
    try:
        done = subprocess.run([sys.executable, "-m", "wa_pipelines.doctor"], capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return [skip("dagster", f"reading the Dagster instance took more than {timeout:.0f} s", "check the Dagster storage")]
    lines = [line for line in done.stdout.splitlines() if line.startswith("[")]
    try:
        return [Check.from_dict(item) for item in json.loads(lines[-1])]
    except (IndexError, ValueError, TypeError, AttributeError):
        err = (done.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return [skip("dagster", f"the Dagster check did not answer (exit {done.returncode}): {err}", "run `python -m wa_pipelines.doctor` to see why")]


def format_checks(checks: Iterable[Check], color: bool = False) -> str:
    """One line per check (``ok``/``WARN``/``FAIL``/``skip``, name, detail), its ``fix:``
    under each one not green, and a summary line; ANSI green/yellow/red when ``color``."""
    checks = list(checks)
    width = max((len(c.name) for c in checks), default=0)
    out = []
    for c in checks:
        mark = _MARKS[c.status]
        if color:
            mark = f"{_COLORS[c.status]}{mark}\033[0m"
        out.append(f"{mark}  {c.name.ljust(width)}  {c.detail}")
        if c.fix and c.status != "ok":
            out.append(f"      {' ' * width}  fix: {c.fix}")
    counts = Counter(c.status for c in checks)
    out.append(", ".join(f"{counts[s]} {s}" for s in ("ok", "warn", "fail", "skip")))
    return "\n".join(out)
