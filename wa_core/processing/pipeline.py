"""Claim and parse the next batch while the current one is written (Postgres).

A batch's time is about half Python (parsing the bodies, building the rows) and half waiting
for Postgres (the multi-row statements and commits). :class:`Pipeline` overlaps the two:
while the run's thread writes batch N, one background thread claims batch N+1 and parses it
(:func:`~.engine.prepare_batch`), on a connection of its own; the writes of a run stay
strictly one batch after the other, in claim order. A prefetch starts only after a full
batch (a backlog is waiting); a steady trickle is claimed as before, one batch at a time.

What the overlap must not change:

- **Leases**: the next batch's rows are leased from their claim and kept by their own
  :class:`~.lease.LeaseKeeper` until they are written, so a slow batch never lets them expire.
- **Routing**: batch N+1 is parsed before batch N commits. Of everything a batch writes, only
  ``account_update`` changes routing (connections); after such a batch the prefetched one is
  parsed again (:func:`~.engine.reparse`) before it is written.
- **Wake-ups**: a notification drained while a prefetched claim was already under way may name
  rows that claim missed; so after a prefetched batch the run claims once more before it
  waits (:attr:`Batch.prefetched`).
- **Stopping**: a prefetched batch is always written (:meth:`Pipeline.flush`) before the run
  hands over or ends; on an error it is released unwritten (its rows wait for their lease).

SQLite has one writer: a claim there would only wait for the batch being written, so the
runner does not use the pipeline on SQLite (``PROCESSING_PREFETCH`` applies to Postgres).
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from wa_core.settings import Settings

from .claim import Claim, claim_batch
from .engine import PreparedBatch, apply_prepared, prepare_batch, reparse
from .lease import LeaseKeeper

log = logging.getLogger("wa_core.processing")

#: fields whose items change routing (connections): a batch parsed before such a batch was
#: written is parsed again
ROUTING_FIELDS = frozenset({"account_update"})


class Batch(list):
    """Outcomes of one batch (a list of :class:`~.dispatch.WebhookOutcome`), plus
    ``held_back``: claimable rows the claim left waiting because their organization was at
    its cap, and ``prefetched``: claimed while the previous batch was being written."""

    held_back: int = 0
    prefetched: bool = False


@dataclass
class _Claimed:
    claim: Claim
    prepared: PreparedBatch | None
    keeper: LeaseKeeper | None

    def release(self) -> None:
        """Give up without writing: close the connection, stop renewing the lease."""
        if self.prepared is not None:
            self.prepared.close()
        if self.keeper is not None:
            self.keeper.__exit__(None, None, None)


class Pipeline:
    """Batches of shard ``shard`` of ``shards``, each claimed and parsed while the one before
    it is written. Use :meth:`next` for each batch and :meth:`close` at the end (it writes a
    batch still prefetched: call :meth:`flush` first to get its outcomes)."""

    def __init__(self, engine: Engine, settings: Settings, limit: int, *, shard: int = 0, shards: int = 1) -> None:
        self.engine, self.settings, self.limit, self.shard, self.shards = engine, settings, limit, shard, shards
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"wa-prefetch-{shard}")
        self._pending: Future[_Claimed] | None = None
        self.prefetches = 0

    @property
    def pending(self) -> bool:
        """A batch is claimed (or being claimed) and not written yet."""
        return self._pending is not None

    def _claim(self) -> _Claimed:
        s = self.settings
        claim = claim_batch(
            self.engine, self.limit, s.processing_lease_seconds, org_max_in_flight=s.processing_org_max_in_flight,
            org_per_minute=s.processing_org_webhooks_per_minute, shard=self.shard, shards=self.shards,
        )
        if not claim:
            return _Claimed(claim, None, None)
        keeper = LeaseKeeper(self.engine, claim, s.processing_lease_seconds).__enter__()
        try:
            return _Claimed(claim, prepare_batch(self.engine, claim, s), keeper)
        except BaseException:
            keeper.__exit__(None, None, None)
            raise

    def next(self, *, prefetch: bool = True) -> Batch:
        """Write the next batch (the prefetched one, else one claimed now) and return its
        outcomes; after a full batch, start claiming the following one unless ``prefetch``
        is False. Database errors propagate (rows stay leased until their lease ends)."""
        prefetched = self._pending is not None
        if self._pending is not None:
            future, self._pending = self._pending, None
            current = future.result()
        else:
            current = self._claim()
        batch = Batch()
        batch.held_back, batch.prefetched = current.claim.held_back, prefetched
        if current.prepared is None:
            return batch
        try:
            if prefetch and len(current.claim) >= self.limit:
                self._pending = self._pool.submit(self._claim)
                self.prefetches += 1
            stale_routing = bool(current.prepared.fields & ROUTING_FIELDS)
            prepared, current.prepared = current.prepared, None  # apply_prepared closes it
            batch.extend(apply_prepared(self.engine, prepared, self.settings, shard=self.shard, shards=self.shards))
        finally:
            current.release()
        if stale_routing and self._pending is not None:
            self._pending = _reparsed(self._pending, self.settings)
        return batch

    def flush(self) -> Batch:
        """Write the prefetched batch, if any, without starting another (empty Batch if none)."""
        return self.next(prefetch=False) if self._pending is not None else Batch()

    def close(self) -> None:
        """Stop: a prefetched batch not written yet is released unwritten (its rows are
        claimable again once their lease ends); the thread is shut down."""
        if self._pending is not None:
            future, self._pending = self._pending, None
            try:
                future.result().release()
            except Exception as exc:  # noqa: BLE001 - its claim failed: nothing is held
                log.warning("prefetched claim failed while stopping (%s)", type(exc).__name__)
        self._pool.shutdown(wait=True)


def _reparsed(future: Future[_Claimed], settings: Settings) -> Future[_Claimed]:
    """``future``'s batch parsed again once it is claimed (routing changed meanwhile)."""
    done: Future[_Claimed] = Future()
    try:
        claimed = future.result()
    except BaseException as exc:  # noqa: BLE001 - handed to next(), which raises it
        done.set_exception(exc)
        return done
    try:
        if claimed.prepared is not None:
            reparse(claimed.prepared, settings)
    except BaseException as exc:  # noqa: BLE001
        claimed.release()
        done.set_exception(exc)
        return done
    done.set_result(claimed)
    return done


__all__ = ["Batch", "Pipeline", "ROUTING_FIELDS"]
