"""The demo traffic of the main job: the demo organizations and their numbers, the fixture
corpus and a steady synthetic stream sent as signed webhooks, the deliberately unclaimed WABA,
and the two demo onboardings (a Cloud API number and a coexistence number)."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import sqlalchemy as sa

from wa_core.bindings import PhoneNumber, bind_waba, ensure_organization
from wa_core.db.engine import create_sync_engine
from wa_core.settings import Settings
from wa_dev.simulate import (
    DEFAULT_CORPUS,
    SendReport,
    SyntheticStream,
    deliver,
    load_corpus,
    send_corpus,
    send_stream,
    synthetic_numbers,
)

#: The fixture corpus's numbers, bound to two demo organizations (``acme`` is a coexistence
#: number: the corpus carries history, echoes and contact sync for it).
CORPUS_BINDINGS = [
    ("acme", "Acme Store", "100000000000001", PhoneNumber("200000000000001", "15550000001", "Acme Store", True)),
    ("globex", "Globex Ltd", "100000000000002", PhoneNumber("200000000000002", "15550000002", "Globex Ltd", False)),
]



#: the business that owns the demo's bound WABAs
DEMO_OWNER_BUSINESS = "300000000000001"

#: a WABA the main job announces with PARTNER_ADDED but binds to no one: the operator's
#: "unclaimed WABA" case (asset check, alert, assign_waba job)
DEMO_UNCLAIMED_WABA = "100000000000777"


def unclaimed_partner_added(waba_id: str = DEMO_UNCLAIMED_WABA) -> bytes:
    """A ``PARTNER_ADDED`` webhook (Meta: account_update webhook reference) for ``waba_id``,
    shaped like the corpus's, as Meta sends it when a customer shares a WABA through a
    hosted link we never saw a session for."""
    now = int(time.time())
    return json.dumps(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "300000000000900",
                    "time": now,
                    "changes": [
                        {
                            "field": "account_update",
                            "value": {
                                "event": "PARTNER_ADDED",
                                "waba_info": {"waba_id": waba_id, "owner_business_id": "300000000000777"},
                            },
                        }
                    ],
                }
            ],
        },
        separators=(",", ":"),
    ).encode()



async def send_one(url: str, secret: str, body: bytes, report: SendReport) -> None:
    """Deliver one ``body`` to ``url`` signed with ``secret`` (as Meta does), noted in ``report``."""
    async with httpx.AsyncClient(timeout=10) as client:
        await deliver(client, url, body, secret, report)


def bind_demo_numbers(settings: Settings, orgs: int) -> None:
    """Bind the corpus's numbers and ``orgs`` synthetic organizations (idempotent)."""
    engine = create_sync_engine(settings)
    try:
        with engine.begin() as conn:
            for external_id, name, waba_id, number in CORPUS_BINDINGS:
                org_id = ensure_organization(conn, external_id, name)
                bind_waba(conn, org_id, waba_id, [number], owner_business_id=DEMO_OWNER_BUSINESS)
            for n in synthetic_numbers(orgs):
                org_id = ensure_organization(conn, n.org_external_id, n.org_name)
                bind_waba(conn, org_id, n.waba_id, [PhoneNumber(n.phone_number_id, n.display_phone_number, n.org_name)], status="active")
    finally:
        engine.dispose()




def demo_business_token(waba_id: str) -> str:
    """The demo's fixed business token of ``waba_id`` (the Graph emulator accepts it)."""
    return f"EAADEMO{waba_id}"


def give_demo_numbers_tokens(settings: Settings, emulator, orgs: int, base_url: str | None = None) -> int:
    """Make the corpus's and the synthetic organizations' numbers real to the Graph emulator
    (``emulator`` a :class:`wa_dev.emulator.GraphEmulator`): their WABAs, a business token per
    WABA stored encrypted on its connection (as an onboarding would), and every media id of
    their numbers served (so the demo's media downloads end ``stored``). With ``base_url``
    (where the emulator answers) each token's health is checked too, as after an onboarding.
    Idempotent (fixed tokens, rewritten each run). Returns the number of connections given a token."""
    from wa_core.db.schema import whatsapp_connections
    from wa_core.meta.crypto import TokenCipher

    cipher = TokenCipher.from_hex(settings.token_encryption_key, settings.token_encryption_previous_keys)
    numbers = [(waba, n) for _, _, waba, n in CORPUS_BINDINGS]
    numbers += [(s.waba_id, PhoneNumber(s.phone_number_id, s.display_phone_number, s.org_name)) for s in synthetic_numbers(orgs)]
    engine = create_sync_engine(settings)
    given: list[tuple] = []
    try:
        with engine.begin() as conn:
            for waba, n in numbers:
                spec = {"id": n.phone_number_id, "display_phone_number": n.display_phone_number, "verified_name": n.verified_name,
                        "coexistence": n.is_coexistence}
                emulator.add_waba(waba, DEMO_OWNER_BUSINESS, [spec])
                token = emulator.add_token(waba, token=demo_business_token(waba))
                emulator.media.serve_any_of.add(n.phone_number_id)
                c = whatsapp_connections.c
                row = conn.execute(sa.select(c.id).where(c.waba_id == waba)).first()
                if row is not None:
                    conn.execute(sa.update(whatsapp_connections).where(c.id == row.id).values(
                        business_token_encrypted=cipher.encrypt(token, row.id)))
                    given.append((row.id, token))
        if base_url:
            from datetime import timedelta

            from wa_core.meta.graph.client import GraphClient
            from wa_core.token_health import check_connection

            soon = timedelta(days=settings.token_expiring_soon_days)
            with GraphClient(base_url, settings.graph_api_version, app_id=emulator.app_id, app_secret=emulator.app_secret) as graph:
                for connection_id, token in given:
                    check_connection(engine, graph, connection_id, token, soon)
    finally:
        engine.dispose()
    return len(numbers)


def feed_demo_traffic(url: str, secret: str, rate: float, duration: float, orgs: int) -> int:
    """Send the fixture corpus, the unclaimed WABA's ``PARTNER_ADDED`` and ``rate`` webhooks/s
    for ``duration`` seconds over ``orgs`` synthetic organizations (none when either is 0) to
    the receiver at ``url``, signed with ``secret``, printing a line for each part. Returns the
    number of deliveries given up."""
    corpus = load_corpus(DEFAULT_CORPUS)
    corpus_report, stream_report = SendReport(), SendReport()
    asyncio.run(send_corpus(url, secret, corpus, corpus_report))
    print(f"fixture corpus ({len(corpus)} files): {corpus_report.summary()}")
    asyncio.run(send_one(url, secret, unclaimed_partner_added(), corpus_report))
    print(
        "operator cases on purpose: not_json.txt becomes a dead letter, and WABA "
        f"{DEMO_UNCLAIMED_WABA} is announced with PARTNER_ADDED but bound to no one (unclaimed); "
        "the dashboards' asset checks fail on both and alert (assign it with the assign_waba job)"
    )
    if duration > 0 and rate > 0:
        stream = SyntheticStream(synthetic_numbers(orgs))
        print(f"steady stream: {rate:g} webhooks/s for {duration:g}s over {orgs} organizations…")
        asyncio.run(send_stream(url, secret, stream, rate, duration, stream_report))
        print(f"steady stream: {stream_report.summary()}")
    return corpus_report.gave_up + stream_report.gave_up


def demo_onboardings(base: str, webhook_url: str, emulator, app_secret: str) -> None:
    """Connect a Cloud API number and a coexistence number like a customer would, then show
    a message flowing for each new number."""
    from wa_dev.demo_onboarding import CLOUD, COEX, connect_with_api, connect_with_browser, message_for

    for spec, label in ((CLOUD, "Cloud API number"), (COEX, "coexistence number")):
        print(f"onboarding ({label}, organization {spec['org']}): clicking Connect WhatsApp…")
        started = time.monotonic()
        result = connect_with_browser(base, spec["org"], spec["coexistence"])
        how = "page in headless Chromium"
        if result is None:
            result, how = connect_with_api(base, emulator.emulator, spec), "API (no Chromium here)"
        print(f"  {result} ({how}, {time.monotonic() - started:.1f}s: session, follow-up run, PARTNER_ADDED)")
        report = SendReport()
        body = message_for(spec, f"wamid.DEMO{spec['phone']}{int(time.time())}", "Hi! Is this the new WhatsApp number?")
        asyncio.run(send_one(webhook_url, app_secret, body, report))
        print(f"  a customer message to the new number: {report.summary().split(';')[0]}")

