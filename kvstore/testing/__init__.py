"""The conformance suite, shipped with the package for driver authors.

Subclass :class:`DriverConformance` in a test module and give it a ``driver_factory`` fixture;
run ``python -m kvstore.testing URL`` to check any registered URL. Needs the ``testing`` extra
(pytest and Hypothesis).
"""

from __future__ import annotations

from kvstore.testing.suite import DriverConformance, DriverFactory

__all__ = ["DriverConformance", "DriverFactory"]
