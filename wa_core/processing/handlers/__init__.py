"""One handler per webhook ``field``; :data:`HANDLERS` maps the field name to it.

A handler takes a :class:`~wa_core.processing.context.ChangeContext` and yields units
(label, work). The work is :func:`~wa_core.processing.records.ignored`, a
:class:`~wa_core.processing.records.Planned` item (rows built in Python, written per item or
set-based for a whole batch) or, for rare fields, a function that applies the item itself
with SQL (run in its own savepoint).
"""

from __future__ import annotations

from collections.abc import Iterable

from ..context import ChangeContext, Handler, Unit
from ..records import ignored
from .account_health import ACCOUNT_FIELDS, handle_account_health
from .account_update import handle_account_update
from .calls import handle_calls
from .coexistence import handle_history, handle_smb_app_state_sync, handle_smb_message_echoes
from .groups import GROUP_FIELDS, handle_groups
from .messages import handle_messages
from .partner_ads import handle_automatic_events, handle_partner_solutions
from .preferences import handle_user_preferences
from .number_health import NUMBER_FIELDS, handle_number_health
from .security import handle_security
from .templates import TEMPLATE_FIELDS, handle_template


def ignore_change(ctx: ChangeContext) -> Iterable[Unit]:
    """Fields we store but do not act on (``partner_solutions``, unknown ones…): one unit,
    marked ignored, never failed."""
    yield (ctx.field or "unknown_field", ignored)


HANDLERS: dict[str, Handler] = {
    "messages": handle_messages,
    "account_update": handle_account_update,
    "history": handle_history,
    "smb_message_echoes": handle_smb_message_echoes,
    "smb_app_state_sync": handle_smb_app_state_sync,
    "user_preferences": handle_user_preferences,
    "calls": handle_calls,
    "partner_solutions": handle_partner_solutions,
    "automatic_events": handle_automatic_events,
    **dict.fromkeys(GROUP_FIELDS, handle_groups),
    # WABA-family state fields (Meta's template, phone number and account webhook references): routed by entry.id
    **{name: handle_template for name in TEMPLATE_FIELDS},
    **{name: handle_number_health for name in NUMBER_FIELDS},
    **{name: handle_account_health for name in ACCOUNT_FIELDS},
    "security": handle_security,
}
