"""``GET /api/admin/whatsapp/doctor``: the Meta setup self-test of ``wa-onboarding doctor``
(:mod:`wa_core.doctor`) over the admin API (``Authorization: Bearer <ADMIN_API_TOKEN>``)."""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from wa_webhook.routes.admin import AdminDep

router = APIRouter(prefix="/api/admin/whatsapp", tags=["admin"])


class DoctorCheck(BaseModel):
    """One check: ``status`` ok (green), warn, fail (broken) or skip (not checked, see detail)."""

    name: str = Field(description="stable dotted id, e.g. meta.webhook_fields")
    status: Literal["ok", "warn", "fail", "skip"]
    detail: str = Field(description="what was found (never a secret)")
    fix: str | None = Field(description="what to do; null when nothing")


class DoctorReport(BaseModel):
    """Every check in order; ``ok`` is false when any check failed (the CLI's exit 1)."""

    ok: bool
    counts: dict[str, int] = Field(description="checks per status")
    checks: list[DoctorCheck]


@router.get("/doctor", response_model=DoctorReport)
def doctor(
    request: Request,
    _: AdminDep,
    dagster: Annotated[bool, Query(description="also read the Dagster instance (DAGSTER_HOME) in a subprocess")] = True,
) -> DoctorReport:
    """Run the doctor with the receiver's settings (a few seconds: Graph calls, two callback
    round trips, one signed test delivery stored as an ignored webhook; see docs/meta-setup.md)."""
    from wa_core.doctor import exit_code, run_doctor
    from wa_webhook.doctor import dagster_checks

    extra = [("dagster", dagster_checks)] if dagster else []
    checks = run_doctor(request.app.state.settings, extra=extra)
    counts = Counter(c.status for c in checks)
    return DoctorReport(
        ok=exit_code(checks) == 0,
        counts={s: counts[s] for s in ("ok", "warn", "fail", "skip")},
        checks=[DoctorCheck(**c.as_dict()) for c in checks],
    )
