"""Worker memory while downloading one 100 MB inbound media file (Meta, WhatsApp Cloud API "Media").

The Graph emulator (in this process, on loopback) serves a generated 100 MiB media file
(``MEDIA_MAX_BYTES``, Meta's inbound cap) through its Media API and expiring CDN. Each variant
then runs in a fresh child process, interleaved per repetition, and reports the time and its
resident memory growth while downloading (``VmHWM`` reset just before, minus ``VmRSS`` then;
read from ``/proc/self/status``):

- ``worker-local``: the product path, ``wa_core.media.download.download_due`` (claim the row,
  decrypt the token, step 1, stream, hash, verify, store) into the local folder;
- ``worker-s3``: the same into an S3 bucket (moto in server mode on loopback, in this process);
- ``reference``: plain httpx streaming the same URL to a file in 256 KiB chunks (the floor);
- ``naive``: ``httpx.get(url).content`` written to a file (what buffering the file costs: the
  control that shows the measurement sees a buffered body).

Every child first downloads a 64 KiB file the same way (imports, pools and code paths warm),
so the growth is the big file's. Writes ``bench/results/media-download-*.json``. Run:

    .venv/bin/python bench/media_download.py                  # embedded SQLite, 3 repetitions
    .venv/bin/python bench/media_download.py --postgres --repeat 5
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_TOKEN_KEY, PROJECT_ROOT, bench_database, drop_db, machine_info, save_results  # noqa: E402

PHONE, WABA = "200000000000001", "100000000000001"
SIZE = 100 * 1024 * 1024

CHILD = r"""
import hashlib, json, sys, time
def status_mib(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
args = json.loads(sys.argv[1])
variant = args["variant"]
import httpx
if variant.startswith("worker"):
    import sqlalchemy as sa
    from wa_core.settings import Settings
    from wa_core.db.engine import create_processing_engine
    from wa_core.db.schema_media import whatsapp_media
    from wa_core.media.download import download_due
    from wa_core.media.storage import MediaStorage
    from wa_core.meta.crypto import TokenCipher
    from wa_core.meta.graph.client import GraphClient
    settings = Settings(_env_file=None, **args["settings"])
    engine = create_processing_engine(settings)
    storage = MediaStorage.from_settings(settings)
    graph = GraphClient(settings.graph_api_base_url, "v25.0", app_id=None, app_secret=None)
    cipher = TokenCipher.from_hex(args["token_key"])
    def release(media_id):  # make only this row due
        with engine.begin() as conn:
            conn.execute(sa.update(whatsapp_media).where(whatsapp_media.c.media_id == media_id).values(next_attempt_at=sa.func.now()))
    def run(media_id):
        release(media_id)
        counts = download_due(engine, settings, graph=graph, storage=storage, cipher=cipher)
        assert counts["stored"] == 1, counts
else:
    http = httpx.Client(timeout=60)
    auth = {"Authorization": "Bearer " + args["token"]}
    def run(media_id):
        info = http.get(f"{args['graph']}/v25.0/{media_id}", headers=auth).json()
        path = f"{args['folder']}/{media_id}"
        digest = hashlib.sha256()
        if variant == "naive":
            body = http.get(info["url"], headers=auth).content
            digest.update(body)
            open(path, "wb").write(body)
            del body
        else:
            with http.stream("GET", info["url"], headers=auth) as r, open(path, "wb") as out:
                for chunk in r.iter_bytes(256 * 1024):
                    digest.update(chunk)
                    out.write(chunk)
        assert digest.hexdigest() == info["sha256"]
run(args["warm_id"])
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # VmHWM := current RSS
rss_before = status_mib("VmRSS")
started = time.perf_counter()
run(args["big_id"])
seconds = time.perf_counter() - started
peak = status_mib("VmHWM")
print(json.dumps({"seconds": round(seconds, 2), "rss_before_mib": round(rss_before, 1), "rss_peak_mib": round(peak, 1),
                  "rss_growth_mib": round(peak - rss_before, 1)}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", action="store_true", help="a throwaway wa_bench_media Postgres database (default: embedded SQLite)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--variants", default="reference,worker-local,worker-s3,naive")
    options = parser.parse_args()
    variants = [v.strip() for v in options.variants.split(",") if v.strip()]

    import logging

    import sqlalchemy as sa
    from moto.server import ThreadedMotoServer
    import s3fs

    from wa_core.bindings import PhoneNumber, bind_waba, ensure_organization
    from wa_core.db.engine import create_sync_engine
    from wa_core.db.schema import utcnow, whatsapp_connections
    from wa_core.db.schema_media import whatsapp_media
    from wa_core.media.rows import media_write
    from wa_core.meta.crypto import TokenCipher
    from wa_dev.emulator import GraphEmulator, serve_in_thread

    emulator = GraphEmulator()
    emulator.add_waba(WABA, "300000000000001", [{"id": PHONE, "display_phone_number": "15550000001"}])
    token = emulator.add_token(WABA)
    graph_url, stop_graph = serve_in_thread(emulator)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's request log
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    s3_url = "http://%s:%d" % s3.get_host_and_port()
    fs = s3fs.S3FileSystem(key="bench", secret="bench", endpoint_url=s3_url)
    fs.mkdir("wa-bench-media")

    work = Path(tempfile.mkdtemp(prefix="wa-bench-media-"))
    settings = bench_database("postgres" if options.postgres else "sqlite", "wa_bench_media", work / "data",
                              graph_api_base_url=graph_url, token_encryption_key=BENCH_TOKEN_KEY)
    engine = create_sync_engine(settings)
    with engine.begin() as conn:
        org = ensure_organization(conn, "bench", "Bench")
        bind_waba(conn, org, WABA, [PhoneNumber(PHONE, "15550000001", "Bench")], status="active")
        conn_row = conn.execute(sa.select(whatsapp_connections.c.id)).scalar_one()
        conn.execute(sa.update(whatsapp_connections).values(business_token_encrypted=TokenCipher.from_hex(BENCH_TOKEN_KEY).encrypt(token, conn_row)))
    counter = iter(range(700000000000001, 800000000000000))

    def new_media(size: int) -> str:
        media_id = str(next(counter))
        emulator.media.add_media(media_id, PHONE, size=size, seed=int(media_id) % 1000)
        message = {"id": f"wamid.BENCH{media_id}", "type": "document", "document": {"id": media_id, "mime_type": "application/pdf"}}
        write = media_write(organization_id=org, connection_id=conn_row, phone_number_id=PHONE, wamid=message["id"], message=message,
                            source="cloud_api", received_at=utcnow(), clean=True)
        with engine.begin() as conn:  # not due until the child releases it
            conn.execute(sa.insert(whatsapp_media).values(**{**write.values, "next_attempt_at": utcnow().replace(year=2100)}))
        return media_id

    env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
    results: dict[str, list[dict]] = {v: [] for v in variants}
    for rep in range(options.repeat):
        for variant in variants:
            warm, big = new_media(64 * 1024), new_media(SIZE)
            child_settings = {
                "database_url": settings.database_url, "WA_DATA_DIR": str(settings.data_dir), "graph_api_base_url": graph_url,
                "token_encryption_key": BENCH_TOKEN_KEY,
            }
            if variant == "worker-s3":
                child_settings.update(media_storage_url="s3://wa-bench-media/inbound", media_s3_endpoint_url=s3_url,
                                      media_s3_access_key_id="bench", media_s3_secret_access_key="bench")
            folder = work / "reference"
            folder.mkdir(exist_ok=True)
            args = {"variant": variant, "settings": child_settings, "token_key": BENCH_TOKEN_KEY, "token": token, "graph": graph_url,
                    "folder": str(folder), "warm_id": warm, "big_id": big}
            out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
            if out.returncode != 0:
                raise SystemExit(f"{variant} failed:\n{out.stderr[-3000:]}")
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            figures["load_avg_1m"] = round(os.getloadavg()[0], 2)
            results[variant].append(figures)
            print(f"rep {rep + 1} {variant:13s} {figures['seconds']:6.2f} s  RSS {figures['rss_before_mib']:6.1f} → "
                  f"{figures['rss_peak_mib']:6.1f} MiB  growth {figures['rss_growth_mib']:6.1f} MiB", flush=True)
            for path in folder.iterdir():
                path.unlink()
            for path in (settings.data_dir / "media").rglob("*"):
                if path.is_file():
                    path.unlink()
            fs.invalidate_cache()
            for key in fs.find("wa-bench-media"):
                fs.rm(key)
    stop_graph()
    s3.stop()
    engine.dispose()
    if options.postgres:
        drop_db("wa_bench_media")
    summary = {v: {"median_growth_mib": sorted(r["rss_growth_mib"] for r in rows)[len(rows) // 2],
                   "max_growth_mib": max(r["rss_growth_mib"] for r in rows),
                   "median_seconds": sorted(r["seconds"] for r in rows)[len(rows) // 2]} for v, rows in results.items()}
    for variant, figures in summary.items():
        print(f"{variant:13s} growth median {figures['median_growth_mib']} MiB, max {figures['max_growth_mib']} MiB; "
              f"time median {figures['median_seconds']} s")
    path = save_results("media-download", {
        "machine": machine_info(), "size_bytes": SIZE, "backend": "postgres" if options.postgres else "sqlite",
        "repeat": options.repeat, "runs": results, "summary": summary,
    })
    print(f"results: {path}")


if __name__ == "__main__":
    main()
