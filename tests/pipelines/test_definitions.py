"""The Dagster definitions, listed and compared with a snapshot so a rename shows up in review
(run history, sensor state and operators' habits hang on these names), and `dg check defs`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from wa_pipelines.definitions import defs

SNAPSHOT = Path(__file__).parent / "definitions_snapshot.json"
ROOT = Path(__file__).resolve().parents[2]


def listed_definitions() -> dict[str, list[str]]:
    """Names of every job, sensor, schedule, asset and asset check, sorted."""
    repo = defs.get_repository_def()
    return {
        "jobs": sorted(j.name for j in repo.get_all_jobs() if not j.name.startswith("__")),
        "sensors": sorted(s.name for s in repo.sensor_defs),
        "schedules": sorted(s.name for s in repo.schedule_defs),
        "assets": sorted(k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()),
        "asset_checks": sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in repo.asset_graph.asset_check_keys),
    }


def test_definitions_match_the_snapshot() -> None:
    found = listed_definitions()
    if os.environ.get("UPDATE_DEFINITIONS_SNAPSHOT"):
        SNAPSHOT.write_text(json.dumps(found, indent=2) + "\n")
    assert found == json.loads(SNAPSHOT.read_text()), (
        "Dagster definitions changed; if on purpose, rerun with UPDATE_DEFINITIONS_SNAPSHOT=1 and review the diff"
    )


def test_dg_check_defs_passes() -> None:
    dg = Path(sys.executable).parent / "dg"
    out = subprocess.run([str(dg), "check", "defs"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "All definitions loaded successfully" in out.stdout + out.stderr
