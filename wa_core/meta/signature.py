"""Meta's ``X-Hub-Signature-256`` webhook signature.

Source: Meta, WhatsApp "Create a webhook endpoint" → "Validating payloads", and Graph API
"Webhooks: getting started": the header is ``sha256=<hex>``, the lowercase hex HMAC-SHA256 of
the **exact POST body bytes**, keyed with the app secret. The bytes carry JSON escapes
(``\\uXXXX``, ``\\/``) that no re-serialization reproduces, so the check must run on the raw
body before any parsing.
"""

from __future__ import annotations

import hashlib
import hmac
from enum import Enum

SIGNATURE_HEADER = "X-Hub-Signature-256"
_PREFIX = "sha256="
_PREFIX_BYTES = _PREFIX.encode("ascii")
_PREFIX_LENGTH = len(_PREFIX)
_SIGNED_LENGTH = _PREFIX_LENGTH + 64  # the prefix and a hex SHA-256


class SignatureResult(str, Enum):
    """Outcome of a signature check; ``VALID`` is the only accepting value."""

    VALID = "valid"
    VALID_PREVIOUS = "valid_previous"  # signed with the app secret before a rotation
    MISSING = "missing"
    MALFORMED = "malformed"
    MISMATCH = "mismatch"


def _hex_digest(body: bytes, app_secret: str | bytes) -> str:
    """``hex(HMAC-SHA256(app_secret, body))``, lower-case."""
    key = app_secret.encode() if isinstance(app_secret, str) else app_secret
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def sign(body: bytes, app_secret: str | bytes) -> str:
    """Header value Meta would send for ``body``: ``"sha256=" + hex(HMAC-SHA256(app_secret, body))``."""
    return _PREFIX + _hex_digest(body, app_secret)


def verify_signature(body: bytes, header: str | bytes | None, app_secret: str | bytes) -> SignatureResult:
    """Check ``header`` (the ``X-Hub-Signature-256`` value, as text or as the raw header bytes)
    against the raw ``body`` bytes.

    Constant-time comparison (:func:`hmac.compare_digest`) on ASCII bytes, so a header with
    non-ASCII characters is a mismatch, never an exception. Uppercase hex is accepted.
    """
    if not header:
        return SignatureResult.MISSING
    if isinstance(header, str):
        header = header.strip().encode("ascii", errors="replace")
    else:
        header = header.strip()
    if not header.startswith(_PREFIX_BYTES) or len(header) != _SIGNED_LENGTH:
        return SignatureResult.MALFORMED
    expected = _hex_digest(body, app_secret).encode("ascii")
    if hmac.compare_digest(header[_PREFIX_LENGTH:].lower(), expected):
        return SignatureResult.VALID
    return SignatureResult.MISMATCH


def tokens_equal(given: str | None, expected: str) -> bool:
    """Constant-time equality for the verify-token handshake; any str (non-ASCII too) is safe."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", errors="surrogatepass"), expected.encode("utf-8"))


def verify_with_rotation(body: bytes, header: str | bytes | None, current: str | bytes, previous: str | bytes | None = None) -> SignatureResult:
    """Verify with the current app secret, then (during a rotation's grace period) the previous
    one: :attr:`SignatureResult.VALID` or :attr:`SignatureResult.VALID_PREVIOUS` accept.

    Meta signs with whatever app secret the app has at send time, and retries for days, so
    deliveries signed with the old secret keep arriving for a while after a reset.
    """
    result = verify_signature(body, header, current)
    if result is SignatureResult.MISMATCH and previous:
        if verify_signature(body, header, previous) is SignatureResult.VALID:
            return SignatureResult.VALID_PREVIOUS
    return result
