"""X-Hub-Signature-256 over the raw bytes (Meta: "Validating payloads")."""

from __future__ import annotations

import json

import pytest

from tests.conftest import APP_SECRET, FIXTURES, fixture_bytes
from wa_core.meta.signature import SignatureResult, sign, tokens_equal, verify_signature


def test_every_fixture_signature_matches_its_exact_bytes(signatures: dict[str, str]) -> None:
    assert len(signatures) >= 14
    for name, header in signatures.items():
        assert verify_signature(fixture_bytes(name), header, APP_SECRET) is SignatureResult.VALID, name


def test_unicode_escaped_body_verifies_but_its_reserialized_form_does_not(signatures: dict[str, str]) -> None:
    raw = fixture_bytes("messages_text_unicode_escaped.json")
    header = signatures["messages_text_unicode_escaped.json"]
    assert verify_signature(raw, header, APP_SECRET) is SignatureResult.VALID
    # what a framework that parses first would hash: every common re-serialization fails
    parsed = json.loads(raw)
    for reserialized in (
        json.dumps(parsed).encode(),
        json.dumps(parsed, separators=(",", ":")).encode(),
        json.dumps(parsed, separators=(",", ":"), ensure_ascii=False).encode(),
    ):
        assert reserialized != raw
        assert verify_signature(reserialized, header, APP_SECRET) is SignatureResult.MISMATCH


@pytest.mark.parametrize(
    ("header", "result"),
    [
        (None, SignatureResult.MISSING),
        ("", SignatureResult.MISSING),
        ("sha1=abc", SignatureResult.MALFORMED),
        ("sha256=" + "0" * 63, SignatureResult.MALFORMED),
        ("sha256=" + "0" * 64, SignatureResult.MISMATCH),
        ("sha256=" + "é" * 64, SignatureResult.MISMATCH),
    ],
)
def test_bad_headers_are_rejected_without_raising(header: str | None, result: SignatureResult) -> None:
    assert verify_signature(b"{}", header, APP_SECRET) is result


def test_uppercase_hex_and_other_secret() -> None:
    body = (FIXTURES / "messages_text.json").read_bytes()
    header = sign(body, APP_SECRET)
    assert verify_signature(body, header.upper().replace("SHA256=", "sha256="), APP_SECRET) is SignatureResult.VALID
    assert verify_signature(body, header, "another_secret") is SignatureResult.MISMATCH
    assert verify_signature(body + b" ", header, APP_SECRET) is SignatureResult.MISMATCH


def test_verify_token_comparison_handles_non_ascii() -> None:
    assert tokens_equal("tok", "tok")
    assert not tokens_equal("tök", "tok")
    assert not tokens_equal(None, "tok")
    assert not tokens_equal("\udcff", "tok")  # a lone surrogate from a bad query string
