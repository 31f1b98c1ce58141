"""Captured stdout/stderr of runs, without Dagster's per-step mirror processes.

Dagster's default :class:`~dagster._core.storage.local_compute_log_manager.LocalComputeLogManager`
captures each step's stdout and stderr into files under ``$DAGSTER_HOME/storage`` (the run
page's "stdout/stderr" tabs read them) and *mirrors* them back to the process's own output
with a ``tail -F`` child per stream, each watched by a ``watch_orphans.py`` child: four extra
processes, about 24 MB RSS, for every running step. A long-lived processing run holds them for
its whole life, two runs during a rollover (docs/benchmarks.md, "Idle stack").

:class:`FileComputeLogManager` is the same manager (same files, same reading, same
``delete_logs`` used by the ``purge_dagster_runs`` job) that captures by redirecting the file
descriptors only. What a step prints still lands in its files and in the UI; it is just not
echoed to the code server's terminal as well (the project's own logs go to the structured
event log anyway, ``python_logs`` in ``dagster.yaml``). Configured in both ``dagster*.yaml``
files as ``compute_logs``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator, Sequence
from contextlib import contextmanager

from dagster import Field, StringSource
from dagster._core.execution.compute_logs import redirect_to_file
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import IO_TYPE_EXTENSION, LocalComputeLogManager
from dagster._serdes import ConfigurableClassData
from dagster._utils import ensure_file, touch_file


def _default_base_dir() -> str:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise ValueError("FileComputeLogManager: set compute_logs.config.base_dir, or DAGSTER_HOME (its default is $DAGSTER_HOME/storage)")
    return os.path.join(home, "storage")


class FileComputeLogManager(LocalComputeLogManager):
    """Stores each step's stdout and stderr in files like ``LocalComputeLogManager`` (config
    ``base_dir``, default ``$DAGSTER_HOME/storage`` as Dagster's own default), without the
    ``tail -F`` mirror processes. Raises ``ValueError`` with neither ``base_dir`` nor
    ``DAGSTER_HOME``."""

    def __init__(self, base_dir: str | None = None, polling_timeout: float | None = None, inst_data: ConfigurableClassData | None = None):
        super().__init__(base_dir or _default_base_dir(), polling_timeout, inst_data)

    @classmethod
    def config_type(cls) -> dict:
        """``base_dir`` (optional) and ``polling_timeout`` (optional, seconds)."""
        return {"base_dir": Field(StringSource, is_required=False), "polling_timeout": Field(float, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value) -> FileComputeLogManager:
        """Built by the Dagster instance from ``compute_logs.config``."""
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def capture_logs(self, log_key: Sequence[str]) -> Generator[CapturedLogContext, None, None]:
        """Redirect this process's stdout and stderr into the step's two files while the step runs."""
        outpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        errpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        ensure_file(outpath)
        ensure_file(errpath)
        with redirect_to_file(sys.stdout, outpath), redirect_to_file(sys.stderr, errpath):
            yield CapturedLogContext(log_key)
        touch_file(self.complete_artifact_path(log_key))  # the capture is complete (Dagster's marker)


__all__ = ["FileComputeLogManager"]
