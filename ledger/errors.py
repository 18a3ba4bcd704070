"""One error tree for the whole ledger. Backends translate driver errors into it.

Every error says what was wrong and what to do; ``retriable`` tells a caller whether
trying the same thing again later can succeed.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Root of every error the ledger raises on purpose."""

    retriable: bool = False
    exit_code: int = 1


class ConfigurationError(LedgerError):
    """A ``LEDGER_*`` setting is missing or wrong; the message names the key."""

    exit_code = 78  # EX_CONFIG


class InvalidInput(LedgerError):
    """Input events were refused; nothing of the batch was appended."""

    exit_code = 65  # EX_DATAERR

    def __init__(self, message: str, errors: list[tuple[int, str, str]] | None = None):
        #: (line number, field, reason) for each refused line.
        self.errors = errors or []
        super().__init__(message)


class CaseRefused(LedgerError):
    """A case file refused a step its lifecycle does not allow; no event was created."""

    exit_code = 65  # EX_DATAERR: the request, not the store, is wrong


class PersistenceError(LedgerError):
    """The log or a view store failed."""

    exit_code = 74  # EX_IOERR


class OperationalError(PersistenceError):
    """The store is unreachable or busy; trying again later can succeed."""

    retriable = True
    exit_code = 75  # EX_TEMPFAIL


class IntegrityError(PersistenceError):
    """The store refused a write that would break an invariant (append-only, unique ids)."""


class TamperedLogError(PersistenceError):
    """The log's hash chain does not verify: records were changed, removed or reordered."""


class SealingError(LedgerError):
    """Sealing or unsealing personal values failed (wrong master key, destroyed key)."""


class SubjectErased(SealingError):
    """The person's key was destroyed (crypto-shredded); their values can never be read again."""


class NotFound(LedgerError):
    """The named person, projection or incident is not known to the ledger."""

    exit_code = 66  # EX_NOINPUT


class Unauthenticated(LedgerError):
    """No credentials, or credentials that are unknown, expired, revoked or disabled.

    The message never quotes the credential."""

    exit_code = 77  # EX_NOPERM


class Forbidden(LedgerError):
    """The caller is known but its role may not do this."""

    exit_code = 77  # EX_NOPERM
