"""Client exceptions turned into kvstore's typed errors, the same way for every driver.

Callers catch :class:`~kvstore.errors.BackendUnavailable` (the server or file cannot be reached
now: retrying later may work) and :class:`~kvstore.errors.BackendError` (anything else the
backend refused), never a client library's own exceptions. Each driver keeps only its
:class:`ErrorTable`, which says which of its client's exceptions mean "unavailable" and how
a few of them are worded; :class:`Translator` does the rest for all of them: the message, the
driver's name and its location (already free of secrets), and the rule that a message quoting
the connection's password is never shown.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from kvstore.errors import BackendError, BackendUnavailable

__all__ = ["ErrorTable", "Translator", "described"]


def described(error: BaseException) -> str:
    """The default wording of a client exception: its class name and its message."""
    return f"{type(error).__name__}: {error}"


@dataclass(frozen=True, slots=True)
class ErrorTable:
    """Which of a client's exceptions mean what: a driver's whole part of error translation.

    ``unavailable`` lists the exception classes that mean the backend cannot be reached now;
    ``is_unavailable``, when given, decides instead (for errors told apart by a code).
    ``describe`` words an exception (default :func:`described`); it may return a fixed text
    where the client's own message could quote stored data.
    """

    unavailable: tuple[type[BaseException], ...] = ()
    is_unavailable: Callable[[BaseException], bool] | None = None
    describe: Callable[[BaseException], str] = described

    def kind(self, error: BaseException) -> type[BackendError]:
        """The class of typed error that ``error`` becomes."""
        if self.is_unavailable is not None:
            unavailable = self.is_unavailable(error)
        else:
            unavailable = isinstance(error, self.unavailable)
        return BackendUnavailable if unavailable else BackendError


class Translator:
    """Turns one driver's client exceptions into typed errors naming the driver and its place.

    ``where`` is the location the errors name (``host:port/db``, a path), already free of
    secrets. ``secret`` is the connection's password, if any: a client message that quotes it
    is replaced by the exception's class name, since cutting a password out of someone else's
    text cannot be done reliably.
    """

    __slots__ = ("driver", "secret", "table", "where")

    def __init__(self, table: ErrorTable, *, driver: str, where: str, secret: str = "") -> None:
        self.table = table
        self.driver = driver
        self.where = where
        self.secret = secret

    def text(self, error: BaseException) -> str:
        """``error`` worded by the driver's table, or its class name if that shows the secret."""
        text = self.table.describe(error)
        if self.secret and self.secret in text:
            return f"{type(error).__name__} (details hidden: they held the password)"
        return text

    def error(self, error: BaseException, doing: str = "") -> BackendError:
        """The typed error for ``error``; ``doing`` (what failed) prefixes the message."""
        text = self.text(error)
        if doing:
            text = f"{doing}: {text}"
        return self.table.kind(error)(text, driver=self.driver, where=self.where)
