"""What the state machine knows about versions: the one each key was last seen at, and all seen.

A key's version is *known* from the moment a versioned read or a conditional write reports it
until the next write or delete of the key; a version once seen for a key never comes back for
that key (versions are random 52-bit numbers, so a repeat is a one in 2**52 event). That is
enough to predict every condition exactly: a condition on a key holds when it names the key's
known version (or absence, for an absent key), and fails for any other version it can name.
"""

from __future__ import annotations

from kvstore.conditional import ANY_VERSION, LEGACY_VERSION, AnyVersion
from kvstore.testing.conditional_support import version_problem

__all__ = ["VersionModel"]


class VersionModel:
    """The versions a sequence of operations has seen, by key."""

    def __init__(self) -> None:
        # key -> its current version, while no write or delete happened since it was seen.
        self.known: dict[str, int] = {}
        # key -> every version seen for it (stale ones included).
        self.seen: dict[str, set[int]] = {}

    def written(self, key: str) -> None:
        """``key`` was written or deleted unconditionally: its current version is unknown."""
        self.known.pop(key, None)

    def observe(self, key: str, version: object, where: str) -> str | None:
        """Record that ``key`` is at ``version`` (as ``where`` said); return what is wrong, if any.

        A version seen again with no write since must be the same; after a write it must be
        one never seen before for the key.
        """
        problem = version_problem(where, version)
        if problem is not None:
            return problem
        assert isinstance(version, int)
        known = self.known.get(key)
        if known is not None and version != known:
            return (
                f"{where}: {key!r} is at version {version}, but nothing wrote it since it was at"
                f" {known}: a version changes only when the key is written"
            )
        if known is None and version in self.seen.get(key, ()):
            return (
                f"{where}: {key!r} is at version {version} again after a write (or a delete and a"
                " new write): every write gives a fresh new_version()"
            )
        self.known[key] = version
        self.seen.setdefault(key, set()).add(version)
        return None

    def holds(self, key: str, expected: int | AnyVersion | None, present: bool) -> bool:
        """Whether a condition ``expected`` on ``key`` holds now (``present``: the key has a value).

        A version that is not the key's known one never matches: the key's current version is
        either known, or fresh and so unlike any version the sequence can name.
        """
        if expected is ANY_VERSION:
            return True
        if expected is None:
            return not present
        return present and self.known.get(key) == expected

    def candidates(self, key: str) -> list[int]:
        """Versions a conditional operation on ``key`` may name: current first, then stale ones."""
        current = self.known.get(key)
        own = self.seen.get(key, set())
        stale = sorted(own - {current}) if current is not None else sorted(own)
        others = sorted(set().union(*self.seen.values()) - own)
        ordered = ([current] if current is not None else []) + stale[:2] + others[:2]
        # Version 0 is the pre-upgrade version no new write gets; the last is a plain guess.
        return [*ordered, LEGACY_VERSION, 12345]
