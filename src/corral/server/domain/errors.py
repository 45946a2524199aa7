"""The domain's errors: what went wrong, in words that know nothing of HTTP.

`corral.server.api` maps each class to its wire answer in one place. The store's own
`StoreUnavailable` is re-exported unchanged (its message already names the store): the domain
never hides it behind another class, so callers catch one type whatever layer raised it.
"""

from __future__ import annotations

from corral.store.base import StoreUnavailable

__all__ = [
    "AlreadyExists",
    "ChangedConcurrently",
    "Conflict",
    "DomainError",
    "Invalid",
    "NotFound",
    "ReadOnly",
    "StoreUnavailable",
]


class DomainError(Exception):
    """Base of the domain's errors; `message` is a sentence a user can act on."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    """No such user, token, setting, cluster or registration token."""


class AlreadyExists(DomainError):
    """The name or id is taken (a username, a registration-token name)."""


class ChangedConcurrently(DomainError):
    """Someone else changed the resource between our read and our write: read it again and
    retry. Nothing was written."""


#: The same error under its short name.
Conflict = ChangedConcurrently


class Invalid(DomainError):
    """A value breaks a domain rule (a setting's format, a cluster that does not exist)."""


class ReadOnly(DomainError):
    """The resource cannot be changed by anyone (a read-only setting such as `cacerts`)."""
