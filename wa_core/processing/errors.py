"""Item-level processing errors: each says whether retrying can help."""

from __future__ import annotations


class ItemError(Exception):
    """An item could not be applied.

    ``kind`` is a short machine-readable error kind (``unroutable``, ``invalid_payload``…),
    ``retryable`` says whether a later attempt can succeed (e.g. the number is still being
    onboarded) or never will (the payload can never parse).
    """

    kind = "handler_error"
    retryable = True

    def __init__(self, message: str, *, kind: str | None = None, retryable: bool | None = None) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        if retryable is not None:
            self.retryable = retryable


class Unroutable(ItemError):
    """No organization is bound to the item's ``phone_number_id`` or WABA (yet)."""

    kind = "unroutable"
    retryable = True


class InvalidPayload(ItemError):
    """The item's shape can never be applied (missing ids, wrong types)."""

    kind = "invalid_payload"
    retryable = False
