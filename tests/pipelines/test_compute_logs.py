"""The instance's compute log manager (wa_pipelines/compute_logs.py, set in both dagster*.yaml):
a step's stdout/stderr land in its files and read back for the UI, with no mirror processes."""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from dagster import DagsterInstance
from sqlalchemy.engine import make_url

from tests.conftest import ADMIN_URL

from wa_pipelines.compute_logs import FileComputeLogManager

ROOT = Path(__file__).resolve().parents[2]


def _children() -> set[int]:
    me = str(os.getpid())
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[1] == me:
            found.add(int(pid))
    return found


@pytest.fixture()
def dagster_pg_url() -> Iterator[str]:
    """A database of its own for the Postgres file's storage (the instance creates its tables
    there at once, even though only the log manager is used here), dropped afterwards."""
    name = f"wa_test_dagster_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(ADMIN_URL).set(drivername="postgresql+psycopg2", database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("config", ["dagster.yaml", "dagster.postgres.yaml"])
def test_captured_output_reads_back_and_is_deleted_without_mirror_processes(tmp_path, monkeypatch, config, request) -> None:
    shutil.copy(ROOT / "dagster" / config, tmp_path / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    if config == "dagster.postgres.yaml":  # the Postgres file reads its storage URL from the environment
        monkeypatch.setenv("DAGSTER_POSTGRES_URL", request.getfixturevalue("dagster_pg_url"))
    instance = DagsterInstance.from_config(str(tmp_path))
    manager = instance.compute_log_manager
    assert isinstance(manager, FileComputeLogManager)
    key = ["run-1", "compute_logs", "step"]
    before = _children()
    with manager.capture_logs(key):
        print("to stdout", flush=True)
        print("to stderr", file=sys.stderr, flush=True)
        during = _children() - before
    assert during == set(), "no tail -F / watch_orphans processes while capturing"
    data = manager.get_log_data(key)
    assert (data.stdout, data.stderr) == (b"to stdout\n", b"to stderr\n")
    assert manager.is_capture_complete(key)
    assert Path(manager.get_log_metadata(key).stdout_location).is_relative_to(tmp_path / "storage")
    manager.delete_logs(prefix=["run-1"])
    assert manager.get_log_data(key).stdout in (None, b"")
    instance.dispose()


def test_captured_output_is_also_mirrored_to_the_process_output(tmp_path) -> None:
    """A run's prints (e.g. the log alert sink's ``ALERT …`` lines) still reach the service's
    own output, as with Dagster's tail mirrors: the daemon's log shows them."""
    import subprocess

    code = (
        "import sys\n"
        "from wa_pipelines.compute_logs import FileComputeLogManager\n"
        f"m = FileComputeLogManager(base_dir={str(tmp_path)!r})\n"
        "with m.capture_logs(['r', 'compute_logs', 's']):\n"
        "    print('ALERT out line', flush=True)\n"
        "    print('ALERT err line', file=sys.stderr, flush=True)\n"
        "print(m.get_log_data(['r', 'compute_logs', 's']).stdout)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert "ALERT out line" in done.stdout and "ALERT err line" in done.stderr
    assert "b'ALERT out line\\n'" in done.stdout  # and the file holds it too
