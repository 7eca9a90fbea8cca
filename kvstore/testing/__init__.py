"""The conformance suite, shipped with the package for driver authors.

Subclass :class:`DriverConformance` in a test module and give it a ``driver_factory`` fixture;
run ``python -m kvstore.testing URL`` to check any registered URL. Needs the ``testing`` extra
(pytest and Hypothesis).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kvstore.testing.extra import missing_testing_extra, testing_extra_error

try:
    import pytest
except ImportError:
    # Without the testing extra the package still imports, so that `python -m kvstore.testing`
    # and the names below can say which pip install to run.
    pass
else:
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
        missing = missing_testing_extra()
        if missing:
            raise testing_extra_error(missing)
        from kvstore.testing import suite

        return getattr(suite, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
