"""Send signed webhooks to a running receiver exactly as Meta does.

Two sources: a corpus of recorded bodies (each file's bytes are sent unchanged), and a
synthetic stream of ``messages`` webhooks (inbound messages and out-of-order statuses)
for several organizations. Like Meta, every POST carries ``Content-Type: application/json``
and ``X-Hub-Signature-256`` over the exact bytes, and a delivery answered with anything
but 200 is retried (immediately, then with growing delays; bounded here, days at Meta).

Source: Meta, WhatsApp "Create a webhook endpoint" and webhooks overview (headers,
retries on non-200, batches of up to 1000 updates, 3 MB bodies).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from wa_core.meta.signature import SIGNATURE_HEADER, sign
from wa_core.reporting.stats import percentile

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = PROJECT_ROOT / "tests" / "fixtures" / "meta"
USER_AGENT = "facebookexternalua"


@dataclass(frozen=True)
class SyntheticNumber:
    """A synthetic organization's business number, used by the demo bindings and the stream."""

    org_external_id: str
    org_name: str
    waba_id: str
    phone_number_id: str
    display_phone_number: str


def synthetic_numbers(count: int) -> list[SyntheticNumber]:
    """``count`` fake organizations, each with one WABA and one number (ids never collide
    with the fixture corpus's ``1000000000000xx``/``2000000000000xx``)."""
    return [
        SyntheticNumber(
            org_external_id=f"demo-org-{i}",
            org_name=f"Demo Org {i}",
            waba_id=f"1000000000011{i:02d}",
            phone_number_id=f"2000000000011{i:02d}",
            display_phone_number=f"1555001{i:04d}",
        )
        for i in range(1, count + 1)
    ]


def wire_bytes(payload: Any) -> bytes:
    """Serialize like Meta's wire format: compact, non-ASCII as ``\\uXXXX``, ``/`` as ``\\/``."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/").encode("ascii")


#: files in a corpus folder that are not webhook bodies
NOT_BODIES = {"signatures.json", "expected.json"}


def load_corpus(folder: Path = DEFAULT_CORPUS) -> list[tuple[str, bytes]]:
    """(file name, exact bytes) of every body in ``folder`` (``*.json`` and ``*.txt``), by name.

    ``signatures.json`` and ``expected.json`` describe the bodies and are skipped.
    """
    paths = [*folder.glob("*.json"), *folder.glob("*.txt")]
    return [(path.name, path.read_bytes()) for path in sorted(paths) if path.name not in NOT_BODIES]


class SyntheticStream:
    """Generates realistic ``messages`` webhooks for a set of numbers.

    About 60 % carry one inbound message (text, image, location, interactive reply, or a
    reaction), 40 % carry statuses of an earlier outbound message, often out of order
    (``read`` before ``delivered``). Each call of :meth:`next_body` returns wire bytes.
    """

    def __init__(self, numbers: list[SyntheticNumber], seed: int | None = None) -> None:
        if not numbers:
            raise ValueError("SyntheticStream needs at least one number")
        self.numbers = numbers
        self.rng = random.Random(seed)
        self.counter = 0
        self.run_id = f"{int(time.time() * 1000):x}"

    def _wamid(self, kind: str) -> str:
        self.counter += 1
        return f"wamid.SIM{kind}{self.run_id}{self.counter:010d}"

    def _value(self, number: SyntheticNumber) -> dict[str, Any]:
        return {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": number.display_phone_number, "phone_number_id": number.phone_number_id},
        }

    def _inbound(self, number: SyntheticNumber, now: int) -> dict[str, Any]:
        user = f"1555{self.rng.randint(2000000, 2000999)}"
        message: dict[str, Any] = {"from": user, "id": self._wamid("IN"), "timestamp": str(now)}
        kind = self.rng.choices(["text", "image", "location", "interactive", "reaction"], weights=[70, 10, 5, 10, 5])[0]
        message["type"] = kind
        if kind == "text":
            message["text"] = {"body": self.rng.choice(["Olá! Vocês abrem hoje?", "Price for 2 units?", "Obrigado 👍", "Can I pay with card/cash?"])}
        elif kind == "image":
            message["image"] = {"caption": "photo", "mime_type": "image/jpeg", "sha256": "fake", "id": f"{self.rng.randint(10**14, 10**15)}"}
        elif kind == "location":
            message["location"] = {"latitude": -23.55, "longitude": -46.63, "name": "Loja Centro"}
        elif kind == "interactive":
            message["interactive"] = {"type": "button_reply", "button_reply": {"id": "confirm", "title": "Confirm"}}
            message["context"] = {"from": number.display_phone_number, "id": self._wamid("OUT")}
        else:
            message["reaction"] = {"message_id": self._wamid("OUT"), "emoji": "❤️"}
        value = self._value(number)
        value["contacts"] = [{"profile": {"name": f"User {user[-3:]}"}, "wa_id": user}]
        value["messages"] = [message]
        return value

    def _statuses(self, number: SyntheticNumber, now: int) -> dict[str, Any]:
        wamid = self._wamid("OUT")
        user = f"1555{self.rng.randint(2000000, 2000999)}"
        names = ["sent", "delivered", "read"][: self.rng.randint(1, 3)]
        statuses = [
            {"id": wamid, "status": name, "timestamp": str(now + i), "recipient_id": user}
            for i, name in enumerate(names)
        ]
        if self.rng.random() < 0.5:
            statuses.reverse()  # newest first, as seen in practice
        value = self._value(number)
        value["statuses"] = statuses
        return value

    def next_body(self) -> bytes:
        """One webhook body as wire bytes."""
        number = self.rng.choice(self.numbers)
        now = int(time.time())
        value = self._inbound(number, now) if self.rng.random() < 0.6 else self._statuses(number, now)
        payload = {
            "object": "whatsapp_business_account",
            "entry": [{"id": number.waba_id, "changes": [{"value": value, "field": "messages"}]}],
        }
        return wire_bytes(payload)


@dataclass
class SendReport:
    """What a simulation sent and how the receiver answered."""

    sent: int = 0
    delivered: int = 0
    retries: int = 0
    gave_up: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)

    def summary(self) -> str:
        """One line: counts and p50/p99 latency of accepted deliveries."""
        p50 = percentile(self.latencies_ms, 50) or 0.0
        p99 = percentile(self.latencies_ms, 99) or 0.0
        return (
            f"sent {self.sent} webhooks: {self.delivered} accepted (200), {self.retries} retries, "
            f"{self.gave_up} gave up; answers {dict(sorted(self.statuses.items()))}; "
            f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
        )


async def deliver(
    client: httpx.AsyncClient,
    url: str,
    body: bytes,
    app_secret: str,
    report: SendReport,
    *,
    max_attempts: int = 5,
    first_retry_seconds: float = 0.5,
) -> int:
    """POST one body like Meta, retrying non-200 answers; returns the last status (0 = no answer)."""
    headers = {
        "Content-Type": "application/json",
        SIGNATURE_HEADER: sign(body, app_secret),
        "User-Agent": USER_AGENT,
    }
    report.sent += 1
    delay = first_retry_seconds
    status = 0
    for attempt in range(1, max_attempts + 1):
        started = time.perf_counter()
        try:
            response = await client.post(url, content=body, headers=headers)
            status = response.status_code
        except httpx.HTTPError:
            status = 0
        report.statuses[status] = report.statuses.get(status, 0) + 1
        if status == 200:
            report.delivered += 1
            report.latencies_ms.append((time.perf_counter() - started) * 1000)
            return status
        if attempt < max_attempts:
            report.retries += 1
            await asyncio.sleep(0 if attempt == 1 else delay)  # Meta: immediately, then decreasing frequency
            delay *= 2
    report.gave_up += 1
    return status


async def send_corpus(url: str, app_secret: str, corpus: list[tuple[str, bytes]], report: SendReport) -> None:
    """Send every corpus body once (in order), retrying like Meta."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        for _name, body in corpus:
            await deliver(client, url, body, app_secret, report)


async def send_stream(
    url: str,
    app_secret: str,
    stream: SyntheticStream,
    rate: float,
    duration: float,
    report: SendReport,
    concurrency: int = 32,
) -> None:
    """Send ``rate`` webhooks per second for ``duration`` seconds (open loop, bounded in-flight)."""
    limit = asyncio.Semaphore(concurrency)
    tasks: list[asyncio.Task] = []
    async with httpx.AsyncClient(timeout=10.0, limits=httpx.Limits(max_connections=concurrency)) as client:

        async def one(body: bytes) -> None:
            async with limit:
                await deliver(client, url, body, app_secret, report)

        start = time.perf_counter()
        total = int(rate * duration)
        for i in range(total):
            target = start + i / rate
            pause = target - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            tasks.append(asyncio.create_task(one(stream.next_body())))
        await asyncio.gather(*tasks)


def iter_numbers_from_corpus(corpus: list[tuple[str, bytes]]) -> Iterator[str]:
    """``phone_number_id`` values found in a corpus (to bind them before replaying)."""
    for _name, body in corpus:
        try:
            payload = json.loads(body)
        except ValueError:
            continue
        for entry in payload.get("entry", []) if isinstance(payload, dict) else []:
            for change in entry.get("changes", []) if isinstance(entry, dict) else []:
                value = change.get("value") if isinstance(change, dict) else None
                metadata = value.get("metadata") if isinstance(value, dict) else None
                if isinstance(metadata, dict) and metadata.get("phone_number_id"):
                    yield str(metadata["phone_number_id"])
