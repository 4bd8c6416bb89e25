"""Why a command must not run: ``Rejected`` and its reason codes.

Every rejection carries one of ``REASONS``, for the audit log and the
``cgw_commands_rejected_total{reason}`` counter; ``AUTHENTICATED`` are the reasons found only
after the signature verified. ``Form`` names the wire form a message arrived in (``jws``, or
``legacy`` for the JSON envelope of the transition); it is reported with every decision.
"""

from typing import Final, Literal, get_args

from gateway.commands.model import Form
from gateway.core.errors import PermanentError

Reason = Literal[
    "too_large",
    "not_utf8",
    "not_json",
    "malformed",
    "unknown_name",
    "bad_args",
    "unknown_key",
    "bad_signature",
    "wrong_target",
    "expired",
    "not_yet_valid",
    "lifetime_too_long",
    "replayed",
]
REASONS: Final[tuple[Reason, ...]] = get_args(Reason)
# Reasons found only after the signature verified: the command really came from the platform.
AUTHENTICATED: Final[frozenset[Reason]] = frozenset(
    {"wrong_target", "expired", "not_yet_valid", "lifetime_too_long", "replayed"}
)
FORMS: Final[tuple[Form, ...]] = get_args(Form)


class Rejected(PermanentError):
    """A command that must not run, and why.

    Attributes:
        reason: one of ``REASONS``: what the counters and the audit log are keyed on.
        detail: a short explanation for people; quotes of the input are clipped.
        command_id: the command's ``id`` if it could be read and is well-formed, else None.
            Authentic only if ``authenticated``: before the signature check anyone on the
            broker could have written it.
        form: the wire form the message was read as, None if it was refused before that
            (too large, not UTF-8).
    """

    def __init__(
        self,
        reason: Reason,
        detail: str,
        command_id: str | None = None,
        *,
        form: Form | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail
        self.command_id = command_id
        self.form: Form | None = form

    @property
    def authenticated(self) -> bool:
        """Whether the signature was verified before this rejection."""
        return self.reason in AUTHENTICATED
