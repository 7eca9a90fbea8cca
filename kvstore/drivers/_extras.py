"""How a driver module says that its optional client library is missing."""

from __future__ import annotations

from kvstore.errors import MissingDependency

DISTRIBUTION = "agentx-persistence"


def missing_extra(driver: str, package: str, extra: str) -> MissingDependency:
    """Return the error a driver module raises when ``package`` cannot be imported."""
    return MissingDependency(
        f"the {driver} driver needs {package}: pip install '{DISTRIBUTION}[{extra}]'"
    )
