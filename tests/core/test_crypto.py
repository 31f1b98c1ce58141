"""Business-token encryption: AES-256-GCM bound to the row id, key ids and rotation (no database)."""

from __future__ import annotations

import base64
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from wa_core.meta.crypto import (
    DecryptionFailed,
    InvalidKey,
    TokenCipher,
    TokenCryptoError,
    key_id,
    parse_key,
    reencrypt_all,
)

OLD_HEX = "11" * 32
NEW_HEX = "a1b2c3d4" * 8
OLD_KEY = bytes.fromhex(OLD_HEX)
NEW_KEY = bytes.fromhex(NEW_HEX)
ROW = uuid.UUID("0b5e1c4e-6f1a-4c36-9d2e-3f0f6a6b7c8d")
OTHER_ROW = uuid.UUID("7d1c9a20-52be-4b0e-8f4e-1a2b3c4d5e6f")
TOKEN = "EAAGm0PX4ZCpsBAKZCZAexampleTokenNotReal123"


@pytest.fixture()
def cipher() -> TokenCipher:
    return TokenCipher(NEW_KEY)


def _blob(stored: str) -> bytes:
    data = stored.split(":")[2]
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _with_blob(stored: str, blob: bytes) -> str:
    version, kid, _ = stored.split(":")
    return f"{version}:{kid}:" + base64.urlsafe_b64encode(blob).rstrip(b"=").decode()


@pytest.mark.parametrize("token", [TOKEN, "", "tøkén-ünïcödé-токен-令牌-🔑", "x" * 5000])
def test_round_trip(cipher: TokenCipher, token: str) -> None:
    stored = cipher.encrypt(token, ROW)
    assert stored.isascii()
    assert stored.startswith(f"v1:{cipher.current_key_id}:")
    assert "=" not in stored
    assert cipher.decrypt(stored, ROW) == token


@given(token=st.text(), row=st.uuids())
def test_round_trip_any_text(token: str, row: uuid.UUID) -> None:
    cipher = TokenCipher(NEW_KEY)
    assert cipher.decrypt(cipher.encrypt(token, row), row) == token


def test_row_id_as_uuid_or_any_uuid_spelling_is_the_same_row(cipher: TokenCipher) -> None:
    stored = cipher.encrypt(TOKEN, ROW)
    for spelling in (str(ROW), str(ROW).upper(), ROW.hex, f"{{{ROW}}}"):
        assert cipher.decrypt(stored, spelling) == TOKEN
    assert cipher.decrypt(cipher.encrypt(TOKEN, "row-42"), "row-42") == TOKEN


def test_same_token_encrypts_differently_each_time(cipher: TokenCipher) -> None:
    first, second = cipher.encrypt(TOKEN, ROW), cipher.encrypt(TOKEN, ROW)
    assert first != second
    assert _blob(first)[:12] != _blob(second)[:12]  # fresh nonce
    assert cipher.decrypt(first, ROW) == cipher.decrypt(second, ROW) == TOKEN


def test_plaintext_never_appears_in_stored_value(cipher: TokenCipher) -> None:
    stored = cipher.encrypt(TOKEN, ROW)
    assert TOKEN not in stored
    assert TOKEN.encode() not in _blob(stored)
    assert base64.urlsafe_b64encode(TOKEN.encode()).decode()[:16] not in stored


def test_ciphertext_moved_to_another_row_fails(cipher: TokenCipher) -> None:
    stored = cipher.encrypt(TOKEN, ROW)
    with pytest.raises(DecryptionFailed) as info:
        cipher.decrypt(stored, OTHER_ROW)
    assert "another row or was altered" in str(info.value)
    assert info.value.__context__ is None  # no chained InvalidTag
    assert stored not in str(info.value) and TOKEN not in str(info.value)


def test_tampering_any_byte_fails(cipher: TokenCipher) -> None:
    stored = cipher.encrypt(TOKEN, ROW)
    blob = _blob(stored)
    for i in range(len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(DecryptionFailed):
            cipher.decrypt(_with_blob(stored, bytes(tampered)), ROW)
    with pytest.raises(DecryptionFailed):  # truncated tag
        cipher.decrypt(_with_blob(stored, blob[:-1]), ROW)


def test_changing_any_character_of_the_stored_string_fails(cipher: TokenCipher) -> None:
    stored = cipher.encrypt(TOKEN, ROW)
    for i, char in enumerate(stored):
        replacement = "B" if char != "B" else "C"
        with pytest.raises(DecryptionFailed):
            cipher.decrypt(stored[:i] + replacement + stored[i + 1:], ROW)


def test_version_and_key_id_tampering_fail() -> None:
    cipher = TokenCipher(NEW_KEY, [OLD_KEY])
    stored = cipher.encrypt(TOKEN, ROW)
    _, kid, data = stored.split(":")
    for bad in (
        f"v2:{kid}:{data}",
        f"V1:{kid}:{data}",
        f"{kid}:{data}",
        f"v1:{kid}:{data}:extra",
        f"v1:{kid.upper()}:{data}",
        f"v1:{key_id(OLD_KEY)}:{data}",  # another known key's id: wrong key and wrong associated data
        f"v1:{kid}:{data}=",  # non-canonical base64
        f"v1:{kid}:{data[:-2]}+/",  # standard, not url-safe, alphabet
        "",
        TOKEN,
    ):
        with pytest.raises(DecryptionFailed):
            cipher.decrypt(bad, ROW)


def test_unknown_key_id_fails_clearly(cipher: TokenCipher) -> None:
    stored = TokenCipher(OLD_KEY).encrypt(TOKEN, ROW)
    with pytest.raises(DecryptionFailed) as info:
        cipher.decrypt(stored, ROW)
    message = str(info.value)
    assert key_id(OLD_KEY) in message
    assert "TOKEN_ENCRYPTION_KEY" in message and "TOKEN_ENCRYPTION_PREVIOUS_KEYS" in message
    assert stored.split(":")[2] not in message


def test_previous_keys_still_decrypt_and_need_rotation() -> None:
    stored_old = TokenCipher(OLD_KEY).encrypt(TOKEN, ROW)
    cipher = TokenCipher(NEW_KEY, [OLD_KEY])
    assert cipher.decrypt(stored_old, ROW) == TOKEN
    assert cipher.needs_rotation(stored_old) is True
    assert cipher.needs_rotation(cipher.encrypt(TOKEN, ROW)) is False


def test_rotation_moves_to_current_key() -> None:
    old_only = TokenCipher(OLD_KEY)
    stored_old = old_only.encrypt(TOKEN, ROW)
    cipher = TokenCipher(NEW_KEY, [OLD_KEY])

    rotated = cipher.rotate(stored_old, ROW)
    assert rotated != stored_old
    assert rotated.split(":")[1] == cipher.current_key_id == key_id(NEW_KEY)
    assert not cipher.needs_rotation(rotated)
    assert cipher.decrypt(rotated, ROW) == TOKEN
    assert TokenCipher(NEW_KEY).decrypt(rotated, ROW) == TOKEN  # old key can now be dropped
    with pytest.raises(DecryptionFailed):
        old_only.decrypt(rotated, ROW)
    assert cipher.rotate(rotated, ROW) is rotated  # already current: unchanged


def test_rotate_refuses_a_value_of_another_row() -> None:
    cipher = TokenCipher(NEW_KEY, [OLD_KEY])
    for stored in (TokenCipher(OLD_KEY).encrypt(TOKEN, ROW), cipher.encrypt(TOKEN, ROW)):
        with pytest.raises(DecryptionFailed):
            cipher.rotate(stored, OTHER_ROW)


def test_reencrypt_all_yields_only_stale_rows() -> None:
    old_only = TokenCipher(OLD_KEY)
    cipher = TokenCipher(NEW_KEY, [OLD_KEY])
    rows = [
        (ROW, old_only.encrypt("token-a", ROW)),
        (OTHER_ROW, cipher.encrypt("token-b", OTHER_ROW)),
        ("row-3", old_only.encrypt("token-c", "row-3")),
    ]
    result = list(reencrypt_all(rows, cipher))
    assert [row_id for row_id, _ in result] == [ROW, "row-3"]
    assert all(not cipher.needs_rotation(stored) for _, stored in result)
    assert dict((r, cipher.decrypt(s, r)) for r, s in result) == {ROW: "token-a", "row-3": "token-c"}
    assert list(reencrypt_all(result, cipher)) == []  # a rerun has nothing left to do


def test_reencrypt_all_names_the_row_that_fails_not_its_content() -> None:
    cipher = TokenCipher(NEW_KEY, [OLD_KEY])
    stolen = TokenCipher(OLD_KEY).encrypt(TOKEN, OTHER_ROW)
    with pytest.raises(DecryptionFailed) as info:
        list(reencrypt_all([(ROW, stolen)], cipher))
    assert str(ROW) in str(info.value)
    assert stolen not in str(info.value) and TOKEN not in str(info.value)


# --- keys --------------------------------------------------------------------------------


def test_key_id_is_short_stable_and_distinct() -> None:
    assert key_id(NEW_KEY) == key_id(bytes.fromhex(NEW_HEX))
    assert len(key_id(NEW_KEY)) == 8 and int(key_id(NEW_KEY), 16) >= 0
    assert key_id(NEW_KEY) != key_id(OLD_KEY)
    assert key_id(NEW_KEY) not in NEW_HEX


def test_parse_key_accepts_64_hex_characters() -> None:
    assert parse_key(NEW_HEX) == NEW_KEY
    assert parse_key(f"  {NEW_HEX.upper()}\n") == NEW_KEY
    assert parse_key(SecretStr(NEW_HEX)) == NEW_KEY


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "is not set"),
        ("", "is empty"),
        ("   ", "is empty"),
        ("a" * 63, "got 63 characters"),
        ("a" * 65, "got 65 characters"),
        ("g" * 64, "characters other than 0-9, a-f"),
        ("aa " * 21 + "a", "characters other than 0-9, a-f"),  # bytes.fromhex would accept inner spaces
        (str(SecretStr(NEW_HEX)), "got 10 characters"),
    ],
)
def test_parse_key_errors_are_clear(value: str | None, expected: str) -> None:
    with pytest.raises(InvalidKey) as info:
        parse_key(value, name="MY_KEY")
    assert "MY_KEY" in str(info.value)
    assert expected in str(info.value)
    assert isinstance(info.value, TokenCryptoError)


def test_parse_key_error_never_echoes_the_key() -> None:
    bad = "SECRETSECRETSECRET" + "0" * 46
    assert len(bad) == 64
    for value in (bad, bad + "0", bad[:-1]):
        with pytest.raises(InvalidKey) as info:
            parse_key(value)
        assert "SECRETSECRET" not in str(info.value)
        assert "TOKEN_ENCRYPTION_KEY" in str(info.value)


def test_cipher_rejects_raw_keys_of_the_wrong_size() -> None:
    with pytest.raises(InvalidKey, match="32 bytes"):
        TokenCipher(NEW_KEY[:16])
    with pytest.raises(InvalidKey, match="previous token encryption key #1"):
        TokenCipher(NEW_KEY, [b"short"])
    with pytest.raises(InvalidKey):
        TokenCipher(NEW_HEX)  # type: ignore[arg-type]  # hex text, not bytes


def test_from_hex_requires_the_current_key() -> None:
    for current in (None, "", "  "):
        with pytest.raises(InvalidKey, match="TOKEN_ENCRYPTION_KEY is not set"):
            TokenCipher.from_hex(current, OLD_HEX)


def test_from_hex_previous_keys_list_with_whitespace_and_empty_items() -> None:
    other_hex = "22" * 32
    cipher = TokenCipher.from_hex(f" {NEW_HEX} ", f" {OLD_HEX} , ,\n{other_hex}\n,{NEW_HEX},{OLD_HEX},")
    assert cipher.current_key_id == key_id(NEW_KEY)
    assert cipher.known_key_ids == (key_id(NEW_KEY), key_id(OLD_KEY), key_id(bytes.fromhex(other_hex)))
    for key in (OLD_KEY, bytes.fromhex(other_hex)):
        assert cipher.decrypt(TokenCipher(key).encrypt(TOKEN, ROW), ROW) == TOKEN
    assert TokenCipher.from_hex(NEW_HEX, None).known_key_ids == (key_id(NEW_KEY),)
    assert TokenCipher.from_hex(NEW_HEX, " , ").known_key_ids == (key_id(NEW_KEY),)
    assert TokenCipher.from_hex(SecretStr(NEW_HEX), SecretStr(OLD_HEX)).known_key_ids == (  # type: ignore[arg-type]
        key_id(NEW_KEY),
        key_id(OLD_KEY),
    )


def test_from_hex_names_the_bad_previous_item_without_echoing_it() -> None:
    bad = "SECRETSECRETSECRET" + "0" * 46
    with pytest.raises(InvalidKey) as info:
        TokenCipher.from_hex(NEW_HEX, f"{OLD_HEX}, ,{bad}")
    assert "TOKEN_ENCRYPTION_PREVIOUS_KEYS item 3" in str(info.value)
    assert "SECRETSECRET" not in str(info.value)


def test_repr_has_no_key_material() -> None:
    cipher = TokenCipher(NEW_KEY, [OLD_KEY])
    text = repr(cipher)
    assert key_id(NEW_KEY) in text and key_id(OLD_KEY) in text
    for key in (NEW_KEY, OLD_KEY):
        assert key.hex() not in text and key.hex()[:16] not in text and repr(key) not in text
    assert not hasattr(cipher, "__dict__")


def test_bad_inputs_raise_without_echoing_the_token(cipher: TokenCipher) -> None:
    with pytest.raises(TypeError):
        cipher.encrypt(TOKEN.encode(), ROW)  # type: ignore[arg-type]
    with pytest.raises(TokenCryptoError) as info:
        cipher.encrypt("SECRETSECRET\ud800", ROW)
    assert "SECRETSECRET" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None  # no chained UnicodeEncodeError
    with pytest.raises(ValueError):
        cipher.encrypt(TOKEN, "")
    with pytest.raises(TypeError):
        cipher.encrypt(TOKEN, 42)  # type: ignore[arg-type]
    with pytest.raises(DecryptionFailed):
        cipher.decrypt(None, ROW)  # type: ignore[arg-type]
    with pytest.raises(DecryptionFailed):
        cipher.needs_rotation("not-a-token")
