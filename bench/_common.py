"""Helpers shared by the bench scripts (not part of the product).

Everything here works on loopback only and on databases named ``wa_bench_*``, which the
scripts create and drop themselves. Nothing here changes product code.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = Path(sys.executable).parent
ADMIN_DSN = os.environ.get("WA_BENCH_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_SECRET = "bench_app_secret_not_real"
#: a fixed, public token key: bench databases hold no business token (the receiver needs a key to start)
BENCH_TOKEN_KEY = "be" * 32

if str(PROJECT_ROOT) not in sys.path:
    sys.path.insert(0, str(PROJECT_ROOT))


# --- databases -------------------------------------------------------------------------
def _check_name(name: str) -> None:
    if not name.startswith("wa_bench_") or not name.replace("_", "").isalnum():
        raise ValueError(f"refusing to touch database {name!r}: bench databases are named wa_bench_*")


def db_url(name: str) -> str:
    """``postgresql://`` URL of database ``name`` on the admin server."""
    _check_name(name)
    base, _, _ = ADMIN_DSN.rpartition("/")
    return f"{base}/{name}"


def drop_db(name: str) -> None:
    """Drop the bench database ``name`` if it exists (``wa_bench_*`` only)."""
    _check_name(name)
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def fresh_db(name: str) -> str:
    """Drop and re-create the bench database ``name``; return its URL."""
    drop_db(name)
    with psycopg.connect(ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return db_url(name)


def make_settings(database_url: str | None, data_dir: Path, **extra: Any):
    """Product ``Settings`` for the bench, ignoring any ``.env`` file."""
    from wa_core.settings import Settings

    values: dict[str, Any] = {"database_url": database_url, "WA_DATA_DIR": str(data_dir), "meta_app_secret": BENCH_SECRET}
    values.update(extra)
    return Settings(_env_file=None, **values)


def service_env(data_dir: Path, database_url: str | None, **extra: str) -> dict[str, str]:
    """The environment of a product process the bench starts (receiver, Dagster daemon): this
    process's, with the bench app secret, the bench token key, ``WA_DATA_DIR`` = ``data_dir``
    and ``DATABASE_URL`` (removed for the embedded SQLite when None), then ``extra``."""
    env = dict(os.environ, META_APP_SECRET=BENCH_SECRET, TOKEN_ENCRYPTION_KEY=BENCH_TOKEN_KEY, WA_DATA_DIR=str(data_dir))
    if database_url:
        env["DATABASE_URL"] = database_url
    else:
        env.pop("DATABASE_URL", None)
    env.update(extra)
    return env


def bench_database(backend: str, db_name: str, data_dir: Path, *, orgs: int = 0, **extra: Any):
    """A fresh, migrated bench database and its product ``Settings`` (:func:`make_settings`,
    ``extra`` passed on).

    ``data_dir`` is emptied (removed and created again) and is the settings' data folder. On
    ``backend`` ``"postgres"`` the database ``db_name`` (``wa_bench_*``) is dropped and created
    again; on ``"sqlite"`` the embedded SQLite file in ``data_dir`` is the database. Then the
    migrations run, and with ``orgs`` > 0 the main job's demo numbers (the fixture corpus's and
    ``orgs`` synthetic organizations) are bound (``wa_dev.feed.bind_demo_numbers``)."""
    from wa_core.db.migrate import upgrade
    from wa_dev.feed import bind_demo_numbers

    if backend not in ("postgres", "sqlite"):
        raise ValueError(f"unknown backend {backend!r}: postgres or sqlite")
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    settings = make_settings(fresh_db(db_name) if backend == "postgres" else None, data_dir, **extra)
    upgrade(settings)
    if orgs > 0:
        bind_demo_numbers(settings, orgs)
    return settings


# --- engines and landing ----------------------------------------------------------------
def shipped_engine(settings, **overrides):
    """The engine a Dagster processing run uses (``wa_pipelines.resources.AppDatabase``):
    ``create_processing_engine`` (Postgres sessions with ``synchronous_commit = off``) with
    ``pool_size=2, max_overflow=2`` on Postgres; ``create_sync_engine`` if the product
    has no ``create_processing_engine`` (older revisions)."""
    from wa_core.db import engine as db_engine

    factory = getattr(db_engine, "create_processing_engine", db_engine.create_sync_engine)
    extra = {"pool_size": 2, "max_overflow": 2} if settings.is_postgres else {}
    extra.update(overrides)
    return factory(settings, **extra)


def landing_row(body: bytes, received_at) -> dict[str, Any]:
    """The values the receiver's landing insert writes for ``body`` (``wa_core/db/landing.py``),
    including the routing hint ``waba_id`` = ``wa_core.routing.routing_waba_id(body)``."""
    import hashlib
    import uuid

    from wa_core.routing import routing_waba_id

    return {
        "received_at": received_at, "body": body, "body_sha256": hashlib.sha256(body).hexdigest(), "body_size": len(body),
        "signature_status": "valid", "request_id": uuid.uuid4().hex, "waba_id": routing_waba_id(body),
        "status": "pending", "attempts": 0, "updated_at": received_at,
    }


def insert_landed(conn, rows: list[dict[str, Any]], chunk: int = 2000) -> None:
    """Insert :func:`landing_row` values into ``whatsapp_webhook_logs`` on ``conn``, ``chunk``
    rows per statement (a set, not a round trip per row)."""
    import sqlalchemy as sa

    from wa_core.db.schema import whatsapp_webhook_logs

    for i in range(0, len(rows), chunk):
        conn.execute(sa.insert(whatsapp_webhook_logs), rows[i : i + chunk])


def fifo_claim_batch(engine, limit: int, lease_seconds: float, **_quotas: Any):
    """The claim as it was before the fair claim (``b93e50a``), reproduced here for comparison
    only: the oldest ``limit`` claimable rows, ``FOR UPDATE SKIP LOCKED`` on Postgres, no
    quotas. It also stamps ``claimed_at`` so the rows end in the same state as with the fair
    claim. Same signature and return type as ``wa_core.processing.claim.claim_batch``
    (quota arguments are ignored, ``held_back`` is always 0)."""
    from datetime import timedelta

    import sqlalchemy as sa

    from wa_core.processing.claim import Claim, ClaimedRow
    from wa_core.backlog import claimable_condition
    from wa_core.db.schema import as_utc, utcnow, whatsapp_webhook_logs as logs

    now = utcnow()
    claim = Claim()
    with engine.begin() as conn:
        candidates = sa.select(logs.c.id, logs.c.locked_until).where(claimable_condition(now)).order_by(logs.c.id).limit(limit)
        if conn.dialect.name == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        found = conn.execute(candidates).all()
        if not found:
            return claim
        expired = {r.id for r in found if r.locked_until is not None}
        rows = conn.execute(
            sa.update(logs)
            .where(logs.c.id.in_([r.id for r in found]))
            .values(locked_until=now + timedelta(seconds=lease_seconds), claimed_at=now, attempts=logs.c.attempts + 1, updated_at=now)
            .returning(logs.c.id, logs.c.body, logs.c.received_at, logs.c.attempts)
        ).all()
    claim.extend(sorted((ClaimedRow(r.id, r.body, as_utc(r.received_at), r.attempts, r.id in expired) for r in rows), key=lambda r: r.id))
    return claim


# --- bodies ----------------------------------------------------------------------------
def combined_bodies(count: int, entries: int = 3, orgs: int = 3, seed: int = 7) -> list[bytes]:
    """``count`` webhook bodies of ``entries`` entries each, built from ``SyntheticStream``.

    One ``SyntheticStream.next_body()`` is 360-590 bytes; Meta batches several entries
    in one delivery, so three of them in one envelope give realistic 1.1-1.8 KB bodies.
    """
    from wa_dev.simulate import SyntheticStream, synthetic_numbers, wire_bytes

    stream = SyntheticStream(synthetic_numbers(orgs), seed=seed)
    out = []
    for _ in range(count):
        parts = [json.loads(stream.next_body()) for _ in range(entries)]
        payload = {"object": "whatsapp_business_account", "entry": [e for p in parts for e in p["entry"]]}
        out.append(wire_bytes(payload))
    return out


# --- processes and ports ---------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            httpx.get(url, timeout=2)
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def stop_group(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM the process group started by us (start_new_session=True), then SIGKILL."""
    import signal

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


# --- CPU accounting ---------------------------------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[str, int, float] | None:
    """(comm, ppid, cpu seconds) of a live process, or None. CPU seconds include its
    reaped children (cutime/cstime), so work done by short-lived children such as Dagster
    run processes and finished Postgres backends is not lost when they exit."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return comm, int(fields[1]), sum(int(f) for f in fields[11:15]) / _TICK


def tree_pids(root_pids: list[int]) -> list[int]:
    """The live processes under ``root_pids`` (themselves included), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _proc_stat(int(entry.name))
            if st:
                children.setdefault(st[1], []).append(int(entry.name))
    tree, todo = [], list(root_pids)
    while todo:
        pid = todo.pop()
        if pid in tree or not Path(f"/proc/{pid}").exists():
            continue
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def memory_snapshot(root_pids: list[int]) -> dict[str, float]:
    """RSS and PSS (MB) summed over the process trees under ``root_pids``, and how many
    processes. RSS counts shared pages once per process (an upper bound); PSS splits them."""
    rss = pss = 0
    pids = tree_pids(root_pids)
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return {"rss_mb": rss / 1024, "pss_mb": pss / 1024, "processes": len(pids)}


def cpu_snapshot(root_pids: list[int]) -> dict[str, float]:
    """CPU seconds used so far by: the process trees under ``root_pids`` ("server"), all
    ``postgres`` processes ("postgres") and the whole machine ("machine"). Used as a
    before/after difference; machine minus the rest is what other processes used."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            st = _proc_stat(int(entry.name))
            if st:
                stats[int(entry.name)] = st
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = set(), list(root_pids)
    while todo:
        pid = todo.pop()
        if pid in tree:
            continue
        tree.add(pid)
        todo.extend(children.get(pid, []))
    server = sum(stats[p][2] for p in tree if p in stats)
    postgres = sum(cpu for comm, _, cpu in stats.values() if comm.startswith("postgres"))
    # whole machine: busy = all CPU time but idle and iowait (first line of /proc/stat)
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    machine = (sum(ticks[:8]) - ticks[3] - ticks[4]) / _TICK
    return {"server": server, "postgres": postgres, "machine": machine}


# --- stats and output --------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    try:
        with psycopg.connect(ADMIN_DSN) as conn:
            pg = conn.execute("SHOW server_version").fetchone()[0]
    except Exception:  # noqa: BLE001
        pg = "?"
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(PROJECT_ROOT), *args], capture_output=True, text=True, timeout=10).stdout.strip()
        except Exception:  # noqa: BLE001
            return "?"

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_head": git("rev-parse", "--short", "HEAD"),
        "git_dirty_files": len([l for l in git("status", "--porcelain", "--untracked-files=no").splitlines() if l.strip()]),
        "nproc": os.cpu_count(),
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "postgres": pg,
    }


def save_results(name: str, data: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    path.write_text(json.dumps(data, indent=2, default=str))
    return path
