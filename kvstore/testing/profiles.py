"""Hypothesis profiles for the conformance suite.

``kvstore-ci`` is deterministic (derandomized, no example database) and bounded, for CI;
``kvstore-dev`` is the quick default; ``kvstore-thorough`` runs far more and longer sequences.
Pick one with the ``KVSTORE_HYPOTHESIS_PROFILE`` environment variable (``ci``, ``dev``,
``thorough``).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["active_settings", "register_profiles"]

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large]


def register_profiles() -> None:
    """Register the three ``kvstore-*`` profiles with Hypothesis (safe to call repeatedly)."""
    settings.register_profile(
        "kvstore-ci",
        max_examples=30,
        stateful_step_count=25,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=_SLOW_OK,
    )
    settings.register_profile(
        "kvstore-dev",
        max_examples=20,
        stateful_step_count=20,
        deadline=None,
        suppress_health_check=_SLOW_OK,
    )
    settings.register_profile(
        "kvstore-thorough",
        max_examples=500,
        stateful_step_count=60,
        deadline=None,
        suppress_health_check=_SLOW_OK,
    )


def active_settings() -> settings:
    """Return the profile named by ``KVSTORE_HYPOTHESIS_PROFILE`` (``dev`` when unset)."""
    register_profiles()
    name = os.environ.get("KVSTORE_HYPOTHESIS_PROFILE", "dev")
    return settings.get_profile(f"kvstore-{name}")
