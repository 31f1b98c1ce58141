"""Authentication of the web app's API: a bearer JWT issued by the SaaS, verified with PyJWT.

The organization comes from a configurable claim (``JWT_ORG_CLAIM``, default ``org_id``),
holding the SaaS's own organization id (``organizations.external_id``). HS256 with
``JWT_SECRET``, or RS256/ES256 with ``JWT_PUBLIC_KEY``; ``exp`` is required, ``aud`` and
``iss`` when configured.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Annotated

import anyio
import jwt
from fastapi import Depends, HTTPException, Request

from wa_core.bindings import ensure_organization
from wa_core.settings import Settings


#: a bearer JWT longer than this is refused before it is parsed
MAX_TOKEN_BYTES = 8192


@dataclass(frozen=True)
class Caller:
    """Who calls the API: the organization (our id and the SaaS's id) and the JWT subject."""

    organization_id: uuid.UUID
    organization_external_id: str
    subject: str | None


def verify_token(token: str, settings: Settings) -> dict:
    """Decode and verify a JWT; returns its claims.

    Raises :class:`fastapi.HTTPException` 401 for a missing, expired, forged or malformed
    token and 503 when no verification key is configured. Messages never echo the token.
    """
    if settings.jwt_public_key:
        key: str = settings.jwt_public_key
        algorithms = [a.strip() for a in settings.jwt_algorithms.split(",") if a.strip() and not a.strip().startswith("HS")]
        algorithms = algorithms or ["RS256", "ES256"]
    elif settings.jwt_secret and settings.jwt_secret.get_secret_value():
        key = settings.jwt_secret.get_secret_value()
        algorithms = ["HS256"]
    else:
        raise HTTPException(503, "API authentication is not configured (JWT_SECRET or JWT_PUBLIC_KEY)")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            options={"require": ["exp"], "verify_aud": settings.jwt_audience is not None},
        )
        if not isinstance(claims.get("exp"), (int, float)) or isinstance(claims.get("exp"), bool):
            raise jwt.InvalidTokenError("exp must be a number")
        return claims
    except jwt.ExpiredSignatureError as exc:
        raise HTTPException(401, "token expired", headers={"WWW-Authenticate": "Bearer"}) from exc
    except jwt.MissingRequiredClaimError as exc:  # says which claim (exp, aud, iss), never its value
        raise HTTPException(401, f"session token without its required {exc.claim!r} claim", headers={"WWW-Authenticate": "Bearer"}) from exc
    except jwt.InvalidTokenError as exc:
        raise HTTPException(401, "invalid or unreadable session token: sign in again", headers={"WWW-Authenticate": "Bearer"}) from exc


async def current_caller(request: Request) -> Caller:
    """FastAPI dependency: the verified caller; creates the organization row on first use."""
    settings: Settings = request.app.state.settings
    limiter = request.app.state.rate_limiter
    ip = request.client.host if request.client else "unknown"
    _limit(await anyio.to_thread.run_sync(limiter.hit, settings.api_ip_limit, "api-ip", ip))
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise HTTPException(401, "bearer token required", headers={"WWW-Authenticate": "Bearer"})
    if len(token) > MAX_TOKEN_BYTES:
        raise HTTPException(401, "token too large", headers={"WWW-Authenticate": "Bearer"})
    claims = verify_token(token.strip(), settings)
    org = claims.get(settings.jwt_org_claim)
    if (
        not isinstance(org, (str, int))
        or isinstance(org, bool)
        or not str(org).strip()
        or len(str(org)) > 255
        or any(ord(ch) < 32 or ord(ch) == 127 for ch in str(org))
    ):
        raise HTTPException(403, f"token has no usable {settings.jwt_org_claim!r} claim")
    external_id = str(org).strip()
    engine = request.app.state.api_engine()

    def ensure() -> uuid.UUID:
        with engine.begin() as conn:
            return ensure_organization(conn, external_id)

    _limit(await anyio.to_thread.run_sync(limiter.hit, settings.api_org_limit, "api-org", external_id))
    org_id = await anyio.to_thread.run_sync(ensure)
    subject = claims.get("sub")
    return Caller(org_id, external_id, str(subject) if subject is not None else None)


def _limit(result: tuple[bool, int]) -> None:
    allowed, retry_after = result
    if not allowed:
        raise HTTPException(429, "too many requests", headers={"Retry-After": str(retry_after)})


CallerDep = Annotated[Caller, Depends(current_caller)]
