"""What one doctor check answers, and how a group of checks is run so that none can crash the rest."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

log = logging.getLogger("wa_core.doctor")

Status = Literal["ok", "warn", "fail", "skip"]
STATUSES: tuple[str, ...] = ("ok", "warn", "fail", "skip")


@dataclass(frozen=True)
class Check:
    """One doctor check's answer.

    ``name``: stable dotted id (``settings.meta_app_secret``, ``meta.webhook_fields``…);
    ``status``: ``ok`` (green), ``warn`` (works, but look at it), ``fail`` (broken: the
    CLI exits 1) or ``skip`` (could not be checked, ``detail`` says why); ``detail``: what
    was found (never a secret); ``fix``: what to do, None when nothing is to be done.
    """

    name: str
    status: Status
    detail: str
    fix: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """``{"name", "status", "detail", "fix"}`` (the admin API's item)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Check:
        """The inverse of :meth:`as_dict`; an unknown status becomes ``fail``."""
        status = data.get("status") if data.get("status") in STATUSES else "fail"
        return cls(str(data.get("name") or "unknown"), status, str(data.get("detail") or ""), data.get("fix") or None)


def ok(name: str, detail: str) -> Check:
    """A green check."""
    return Check(name, "ok", detail)


def warn(name: str, detail: str, fix: str | None = None) -> Check:
    """A check that works but deserves a look."""
    return Check(name, "warn", detail, fix)


def fail(name: str, detail: str, fix: str | None = None) -> Check:
    """A broken check (``wa-onboarding doctor`` exits 1)."""
    return Check(name, "fail", detail, fix)


def skip(name: str, detail: str, fix: str | None = None) -> Check:
    """A check that could not run; ``detail`` says why."""
    return Check(name, "skip", detail, fix)


CheckGroup = Callable[[], Iterable[Check]]


def run_group(name: str, group: CheckGroup) -> list[Check]:
    """Run one group of checks; an unexpected exception becomes one more ``fail`` named
    ``name`` (its type and first line, never a traceback) after the checks the group already
    answered, so one broken check never hides the others."""
    checks: list[Check] = []
    try:
        for check in group():
            checks.append(check)
    except Exception as exc:  # a doctor reports, it does not crash
        log.warning("doctor check %s raised %s", name, type(exc).__name__)
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        checks.append(fail(name, f"the check itself failed: {type(exc).__name__}: {first}", "see the service logs; report it if it persists"))
    return checks


def exit_code(checks: Iterable[Check]) -> int:
    """0 when no check failed (``warn``/``skip`` included), 1 when any did."""
    return 1 if any(c.status == "fail" for c in checks) else 0
