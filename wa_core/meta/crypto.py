"""Encryption of stored business tokens (AES-256-GCM, bound to the owning row, rotatable keys).

The token Embedded Signup hands us is a long-lived credential for a customer's WABA, so the
database only ever holds it encrypted. The scheme, from the product issue:

- **AES-256-GCM** (:class:`cryptography.hazmat.primitives.ciphers.aead.AESGCM`) with a fresh
  96-bit ``os.urandom`` nonce per value: two encryptions of one token never look alike.
- **The owning row's id is associated data**: a ciphertext copied to another row does not
  decrypt there. The associated data also binds the format version and the key id, so
  altering any part of the stored string fails authentication.
- **A key id in the stored value**, so keys can rotate: ``TOKEN_ENCRYPTION_KEY`` (64 hex
  characters) encrypts; older keys listed in ``TOKEN_ENCRYPTION_PREVIOUS_KEYS`` still decrypt;
  :func:`reencrypt_all` (under the rotation command) moves every value to the current key,
  after which the old key can be dropped from the settings.

Stored format (ASCII, fits a ``TEXT`` column)::

    v1:<key id>:<base64url without "=" padding of nonce (12 bytes) + ciphertext + tag (16 bytes)>

``<key id>`` is :func:`key_id` of the encrypting key (8 lowercase hex characters, public).
The associated data is ``b"v1|" + key_id + b"|" + row id`` where the row id is ``str(row_id)``,
a UUID (object or string in any form :class:`uuid.UUID` accepts) in its canonical lowercase
hyphenated form. Only the canonical base64 spelling is accepted, so every change to the
stored string is detected.

Tokens never appear in this module's exceptions: messages name the setting or the key id,
never the key, the stored value or the plaintext, and library exceptions are not chained.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import TypeVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
FORMAT_VERSION = "v1"
CURRENT_KEY_SETTING = "TOKEN_ENCRYPTION_KEY"
PREVIOUS_KEYS_SETTING = "TOKEN_ENCRYPTION_PREVIOUS_KEYS"

_KEY_ID_DOMAIN = b"wa-token-key-id:"
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_KEY_ID = re.compile(r"[0-9a-f]{8}")
_GENERATE_HINT = "generate one with: python -c 'import secrets; print(secrets.token_hex(32))'"

RowId = str | uuid.UUID
_R = TypeVar("_R", bound=RowId)


class TokenCryptoError(Exception):
    """Base of every token-encryption error; messages never contain keys, tokens or ciphertexts."""


class InvalidKey(TokenCryptoError):
    """Key material or key configuration is unusable (missing, wrong length, not hex, clashing ids).

    Raised at start-up (when the cipher is built from the settings) so a misconfigured service
    stops with a message that says what is wrong, without echoing the key.
    """


class DecryptionFailed(TokenCryptoError):
    """A stored value cannot be decrypted: malformed, unknown key id, wrong row id or altered."""


def key_id(key: bytes) -> str:
    """Public id of ``key``: the first 8 hex characters of ``SHA-256(b"wa-token-key-id:" + key)``.

    Stable across processes, so a stored value names the key that encrypted it and a rotated
    configuration can find it. One-way and domain-separated: it reveals nothing usable about
    the key (32 bits of a hash of a 256-bit secret).
    """
    return hashlib.sha256(_KEY_ID_DOMAIN + key).hexdigest()[:8]


def _reveal(value: object) -> object:
    """The text of a :class:`pydantic.SecretStr` (its ``str()`` is ``"**********"``), else ``value``."""
    get_secret_value = getattr(value, "get_secret_value", None)
    return get_secret_value() if callable(get_secret_value) else value


def parse_key(hex_key: str | None, *, name: str = CURRENT_KEY_SETTING) -> bytes:
    """The 32 key bytes of ``hex_key`` (exactly 64 hex characters once surrounding whitespace is stripped).

    A :class:`pydantic.SecretStr` (as the settings hold it) is accepted too. Raises
    :class:`InvalidKey` naming ``name`` (the setting) when the value is missing, empty, of the
    wrong length or not hex. The message gives the length at most, never the value.
    """
    hex_key = _reveal(hex_key)
    if hex_key is None:
        raise InvalidKey(f"{name} is not set; {_GENERATE_HINT}")
    if not isinstance(hex_key, str):
        raise InvalidKey(f"{name} must be a string of 64 hex characters; got {type(hex_key).__name__}")
    text = hex_key.strip()
    if not text:
        raise InvalidKey(f"{name} is empty; {_GENERATE_HINT}")
    if len(text) != 2 * KEY_BYTES:
        raise InvalidKey(f"{name} must be 64 hex characters (32 bytes); got {len(text)} characters")
    if not _HEX_KEY.fullmatch(text):
        raise InvalidKey(f"{name} must be 64 hex characters (32 bytes); it contains characters other than 0-9, a-f")
    return bytes.fromhex(text)


def _check_key(key: object, what: str) -> bytes:
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise InvalidKey(f"{what} must be {KEY_BYTES} bytes; got {type(key).__name__}")
    key = bytes(key)
    if len(key) != KEY_BYTES:
        raise InvalidKey(f"{what} must be {KEY_BYTES} bytes (AES-256); got {len(key)} bytes")
    return key


def _row_text(row_id: RowId) -> str:
    """The row id as bound into the associated data (UUIDs in canonical form)."""
    if isinstance(row_id, uuid.UUID):
        return str(row_id)
    if not isinstance(row_id, str):
        raise TypeError(f"row_id must be a str or uuid.UUID; got {type(row_id).__name__}")
    if not row_id:
        raise ValueError("row_id must not be empty: it binds the token to its row")
    try:
        return str(uuid.UUID(row_id))
    except ValueError:
        return row_id


def _associated_data(kid: str, row_id: RowId) -> bytes:
    return f"{FORMAT_VERSION}|{kid}|{_row_text(row_id)}".encode()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _split(stored: str) -> tuple[str, bytes]:
    """``(key id, nonce + ciphertext + tag)`` of a stored value; :class:`DecryptionFailed` if malformed."""
    if not isinstance(stored, str):
        raise DecryptionFailed(f"stored token must be a str; got {type(stored).__name__}")
    parts = stored.split(":")
    if len(parts) != 3 or parts[0] != FORMAT_VERSION:
        raise DecryptionFailed(f"stored token is not in the {FORMAT_VERSION}:<key id>:<data> format")
    _, kid, data = parts
    if not _KEY_ID.fullmatch(kid):
        raise DecryptionFailed("stored token has a malformed key id")
    try:
        blob = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        blob = None
    if blob is None or _b64encode(blob) != data or len(blob) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionFailed("stored token data is not valid (base64url of nonce, ciphertext and tag)")
    return kid, blob


class TokenCipher:
    """Encrypts tokens under the current key; decrypts under the current or any previous key.

    ``current_key`` and each of ``previous_keys`` are 32 raw bytes (see :func:`parse_key`, or
    build from the settings with :meth:`from_hex`). Repeated keys are ignored; two different
    keys with the same :func:`key_id` raise :class:`InvalidKey` (generate another key).

    Rotation: set the new key as ``TOKEN_ENCRYPTION_KEY``, move the old one to
    ``TOKEN_ENCRYPTION_PREVIOUS_KEYS``, run the re-encryption command (:func:`reencrypt_all`),
    then drop the old key. Values under a previous key keep decrypting in between.
    """

    __slots__ = ("_current_id", "_ciphers")

    def __init__(self, current_key: bytes, previous_keys: Sequence[bytes] = ()) -> None:
        current_key = _check_key(current_key, "current token encryption key")
        self._current_id = key_id(current_key)
        self._ciphers: dict[str, AESGCM] = {self._current_id: AESGCM(current_key)}
        seen = {current_key}
        for index, key in enumerate(previous_keys, start=1):
            key = _check_key(key, f"previous token encryption key #{index}")
            if key in seen:
                continue
            seen.add(key)
            kid = key_id(key)
            if kid in self._ciphers:
                raise InvalidKey(f"two different token encryption keys share key id {kid}; replace one of them")
            self._ciphers[kid] = AESGCM(key)

    @classmethod
    def from_hex(cls, current: str | None, previous: str | None = None) -> TokenCipher:
        """Cipher from the settings' text: ``TOKEN_ENCRYPTION_KEY`` and ``TOKEN_ENCRYPTION_PREVIOUS_KEYS``.

        ``current`` is 64 hex characters; ``previous`` is a comma-separated list of such keys
        (whitespace around items and empty items are ignored; ``None`` or blank means none).
        Either may be a :class:`pydantic.SecretStr`, as the settings hold them. Raises
        :class:`InvalidKey` naming the faulty setting (and item number) when ``current`` is
        missing or any key is malformed, so start-up stops with a clear message.
        """
        current, previous = _reveal(current), _reveal(previous)
        if current is None or (isinstance(current, str) and not current.strip()):
            raise InvalidKey(
                f"{CURRENT_KEY_SETTING} is not set: it encrypts the stored business tokens (64 hex characters); "
                + _GENERATE_HINT
            )
        if previous is not None and not isinstance(previous, str):
            raise InvalidKey(f"{PREVIOUS_KEYS_SETTING} must be a comma-separated string; got {type(previous).__name__}")
        previous_keys = [
            parse_key(item, name=f"{PREVIOUS_KEYS_SETTING} item {index}")
            for index, item in enumerate((previous or "").split(","), start=1)
            if item.strip()
        ]
        return cls(parse_key(current, name=CURRENT_KEY_SETTING), previous_keys)

    @property
    def current_key_id(self) -> str:
        """:func:`key_id` of the key new values are encrypted under."""
        return self._current_id

    @property
    def known_key_ids(self) -> tuple[str, ...]:
        """Ids of every key that decrypts, the current one first."""
        return tuple(self._ciphers)

    def __repr__(self) -> str:
        previous = [kid for kid in self._ciphers if kid != self._current_id]
        return f"TokenCipher(current_key_id={self._current_id!r}, previous_key_ids={previous!r})"

    def encrypt(self, plaintext: str, row_id: RowId) -> str:
        """Encrypt ``plaintext`` for row ``row_id`` under the current key: ``"v1:<key id>:<base64url>"``.

        A fresh random 96-bit nonce per call, so equal tokens give different values. Raises
        :class:`TypeError` if ``plaintext`` is not a str, :class:`TokenCryptoError` if it is not
        encodable as UTF-8 (lone surrogates), and :class:`TypeError`/:class:`ValueError` for a
        row id that is not a non-empty str or a UUID.
        """
        if not isinstance(plaintext, str):
            raise TypeError(f"plaintext must be a str; got {type(plaintext).__name__}")
        try:
            data = plaintext.encode("utf-8")
        except UnicodeEncodeError:  # raised outside the handler: its context would carry the token
            data = None
        if data is None:
            raise TokenCryptoError("token is not valid Unicode text (it contains a lone surrogate)")
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._current_id].encrypt(nonce, data, _associated_data(self._current_id, row_id))
        return f"{FORMAT_VERSION}:{self._current_id}:{_b64encode(nonce + sealed)}"

    def decrypt(self, stored: str, row_id: RowId) -> str:
        """The token in ``stored`` (a value :meth:`encrypt` made for the same ``row_id``).

        Decrypts under whichever known key the stored key id names. Raises
        :class:`DecryptionFailed` when the value is malformed, its key id is neither the
        current nor a previous key, or authentication fails (another row's value, or any part
        of the string altered). The message never contains the value or the token.
        """
        kid, blob = _split(stored)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise DecryptionFailed(
                f"stored token was encrypted under key id {kid}, which is neither {CURRENT_KEY_SETTING} "
                f"nor listed in {PREVIOUS_KEYS_SETTING}"
            )
        try:
            data = cipher.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], _associated_data(kid, row_id))
            return data.decode("utf-8")
        except (InvalidTag, UnicodeDecodeError):
            pass
        raise DecryptionFailed(
            f"stored token does not authenticate under key id {kid}: it belongs to another row or was altered"
        )

    def needs_rotation(self, stored: str) -> bool:
        """True when ``stored`` is not encrypted under the current key (reads the key id only).

        Raises :class:`DecryptionFailed` for a malformed value. It does not authenticate:
        :meth:`rotate` and :meth:`decrypt` do.
        """
        kid, _ = _split(stored)
        return kid != self._current_id

    def rotate(self, stored: str, row_id: RowId) -> str:
        """``stored`` under the current key: the input itself if already current, else a fresh encryption.

        Always decrypts first (with whichever key), so a value that does not belong to
        ``row_id`` or was altered raises :class:`DecryptionFailed` instead of being passed on.
        """
        plaintext = self.decrypt(stored, row_id)
        if not self.needs_rotation(stored):
            return stored
        return self.encrypt(plaintext, row_id)


def reencrypt_all(rows: Iterable[tuple[_R, str]], cipher: TokenCipher) -> Iterator[tuple[_R, str]]:
    """``(row_id, new stored value)`` for each of ``rows`` not yet under ``cipher``'s current key.

    ``rows`` are ``(row_id, stored value)`` pairs; rows already under the current key are
    skipped without decrypting, so a rerun after an interruption only does the remainder. A
    value that cannot be decrypted raises :class:`DecryptionFailed` naming its row id (not its
    content) and ends the iteration: fix or clear that row before retiring the old key.
    Pure: the caller reads the rows and writes back what is yielded.
    """
    for row_id, stored in rows:
        try:
            if not cipher.needs_rotation(stored):
                continue
            new_stored = cipher.rotate(stored, row_id)
        except DecryptionFailed as exc:
            raise DecryptionFailed(f"row {row_id}: {exc}") from None
        yield row_id, new_stored
