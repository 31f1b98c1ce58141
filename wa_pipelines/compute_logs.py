"""Captured stdout/stderr of runs, without Dagster's per-step mirror processes.

Dagster's default :class:`~dagster._core.storage.local_compute_log_manager.LocalComputeLogManager`
captures each step's stdout and stderr into files under ``$DAGSTER_HOME/storage`` (the run
page's "stdout/stderr" tabs read them) and *mirrors* them back to the process's own output
with a ``tail -F`` child per stream, each watched by a ``watch_orphans.py`` child: four extra
processes, about 24 MB RSS, for every running step. A long-lived processing run holds them for
its whole life, two runs during a rollover (docs/benchmarks.md, "Idle stack").

:class:`FileComputeLogManager` is the same manager (same files, same reading, same
``delete_logs`` used by the ``purge_dagster_runs`` job) that captures by redirecting the file
descriptors, and mirrors each file back to the process's original output with one thread per
stream instead of two processes: what a step prints lands in its files (the UI) and, as
before, in the service's own log (an operator tailing the daemon's or code server's output
still sees a run's alerts and warnings). Configured in both ``dagster*.yaml`` files as
``compute_logs``.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Generator, Sequence
from contextlib import contextmanager
from typing import Any

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


#: how often a mirror thread looks for new output while the step is quiet (seconds)
MIRROR_POLL_SECONDS = 0.2


@contextmanager
def mirror_to_original(path: str, stream: Any) -> Generator[None, None, None]:
    """While the block runs, copy what is appended to ``path`` to where ``stream`` (stdout or
    stderr) pointed when the block began, from a thread (Dagster's ``tail -F`` without the
    process). Enter it before the stream is redirected into ``path``; the rest of the file is
    copied once the block has ended. A stream without a file descriptor is not mirrored."""
    try:
        target = os.dup(stream.fileno())
    except (AttributeError, OSError, ValueError):  # e.g. a test runner's in-memory stream
        yield
        return
    stop = threading.Event()

    def pump() -> None:
        with open(path, "rb") as source:
            while True:
                chunk = source.read(65536)
                if chunk:
                    try:
                        os.write(target, chunk)
                    except OSError:  # the original output is gone (closed pipe): keep only the file
                        return
                    continue
                if stop.is_set():
                    return
                stop.wait(MIRROR_POLL_SECONDS)

    thread = threading.Thread(target=pump, name="compute-log-mirror", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
        os.close(target)


class FileComputeLogManager(LocalComputeLogManager):
    """Stores each step's stdout and stderr in files like ``LocalComputeLogManager`` (config
    ``base_dir``, default ``$DAGSTER_HOME/storage`` as Dagster's own default), without the
    ``tail -F`` mirror processes (threads mirror the output instead). Raises ``ValueError`` with neither ``base_dir`` nor
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
        """Redirect this process's stdout and stderr into the step's two files while the step
        runs, mirrored to the original outputs (:func:`mirror_to_original`)."""
        outpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDOUT])
        errpath = self.get_captured_local_path(log_key, IO_TYPE_EXTENSION[ComputeIOType.STDERR])
        ensure_file(outpath)
        ensure_file(errpath)
        with mirror_to_original(outpath, sys.stdout), mirror_to_original(errpath, sys.stderr):
            with redirect_to_file(sys.stdout, outpath), redirect_to_file(sys.stderr, errpath):
                yield CapturedLogContext(log_key)
        touch_file(self.complete_artifact_path(log_key))  # the capture is complete (Dagster's marker)


__all__ = ["MIRROR_POLL_SECONDS", "FileComputeLogManager", "mirror_to_original"]
