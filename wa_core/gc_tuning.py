"""Garbage-collector tuning for the two long-lived kinds of process: the receiver and the
processing runs (measured in docs/benchmarks.md, sections 1 and 7.3).

- :func:`freeze_once`: once per process, what is alive now (imports, FastAPI, pydantic,
  SQLAlchemy, Dagster definitions) is moved out of the collector's generations
  (:func:`gc.freeze`), so no later collection walks it again (full collections under load
  showed in the receiver's p99). Once only, so a process creating many apps (tests) never
  freezes the garbage of earlier ones.
- :func:`batch_friendly_gc`: while a run processes, young collections every
  ``GC_THRESHOLDS[0]`` allocations instead of Python's 700.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: garbage-collector thresholds while a run processes (Python's default: 700, 10, 10). A batch
#: allocates about 100k objects that live until its outcomes are stored; with the default a
#: batch of 1000 webhooks triggers ~150 young collections, each walking what the batch built so
#: far, and full ones walking everything the process holds (measured: about 40 % of the parse
#: time and a third of the engine's Python time, docs/benchmarks.md 7.3)
GC_THRESHOLDS = (50_000, 20, 20)


class _State:
    lock = threading.Lock()
    frozen = False
    users = 0  # batch_friendly_gc blocks in progress (overlapping runs in threads of one process)
    saved: tuple[int, ...] = ()


def freeze_once() -> None:
    """:func:`gc.freeze` what is alive now, after a collection (what is garbage is freed, not
    frozen); only the first call in a process does anything."""
    with _State.lock:
        if not _State.frozen:
            _State.frozen = True
            gc.collect()
            gc.freeze()


@contextmanager
def batch_friendly_gc() -> Iterator[None]:
    """While a run processes: :func:`freeze_once`, and young collections every
    ``GC_THRESHOLDS[0]`` allocations (the cycles a batch leaves are still collected). The first
    of overlapping blocks saves the process's thresholds and the last one restores them."""
    freeze_once()
    with _State.lock:
        if not _State.users:
            _State.saved = gc.get_threshold()
            gc.set_threshold(*GC_THRESHOLDS)
        _State.users += 1
    try:
        yield
    finally:
        with _State.lock:
            _State.users -= 1
            if not _State.users:
                gc.set_threshold(*_State.saved)


__all__ = ["GC_THRESHOLDS", "batch_friendly_gc", "freeze_once"]
