"""The conformance suite, shipped with the package for driver authors.

Subclass :class:`DriverConformance` in a test module and give it a ``driver_factory`` fixture;
run ``python -m kvstore.testing URL`` to check any registered URL. Needs the ``testing`` extra
(pytest and Hypothesis).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

# The suite's own asserts should explain failures in the driver author's test run.
pytest.register_assert_rewrite(
    "kvstore.testing.suite",
    "kvstore.testing.stateful",
    "kvstore.testing.conditional_clauses",
    "kvstore.testing.conditional_races",
    "kvstore.testing.conditional_support",
)

if TYPE_CHECKING:
    from kvstore.testing.suite import DriverConformance, DriverFactory

__all__ = ["DriverConformance", "DriverFactory"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so that `python -m kvstore.testing` can start pytest before the
    # suite (and Hypothesis) are imported.
    if name in __all__:
        from kvstore.testing import suite

        return getattr(suite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
