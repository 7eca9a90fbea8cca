"""Hypothesis profiles for the conformance suite.

``kvstore-ci`` is deterministic (derandomized, no example database) and bounded, for CI;
``kvstore-dev`` is the default; ``kvstore-quick`` runs a handful of short sequences, for a first
run against a new driver; ``kvstore-thorough`` runs far more and longer sequences. Pick one with
the ``KVSTORE_HYPOTHESIS_PROFILE`` environment variable (``ci``, ``dev``, ``quick``,
``thorough``).

Every bug kind the suite promises to catch has a deterministic example test as well, so no
profile relies on luck for those; the state machine adds breadth. Shrinking a failure is capped
(``SHRINK_SECONDS``) so a failing run ends with a readable example in bounded time.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = [
    "SHRINK_SECONDS",
    "active_settings",
    "load_active_profile",
    "race_size",
    "register_profiles",
]

# Hypothesis shrinks a failure for up to five minutes by default; a state machine over a
# server can take all of it. A minute yields a short enough example.
SHRINK_SECONDS = 60

# Concurrent Storage.update tasks, and increments each, in the counter clause, per profile. Every
# task that loses a race tries again, so an increment costs about tasks / 2 attempts: the default
# stays at a few hundred round trips (a second or two on a slow server).
_RACES = {"quick": (5, 4), "ci": (10, 5), "dev": (10, 5), "thorough": (20, 10)}

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
        "kvstore-quick",
        max_examples=5,
        stateful_step_count=10,
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
    _cap_shrinking()
    return settings.get_profile(_active_name())


def load_active_profile() -> None:
    """Make the profile named by ``KVSTORE_HYPOTHESIS_PROFILE`` every property test's default.

    A test suite's ``conftest.py`` calls it, so that its own ``@given`` tests (not only the
    conformance suite's) run with the same bounded, deterministic settings in CI.
    """
    register_profiles()
    _cap_shrinking()
    settings.load_profile(_active_name())


def race_size() -> tuple[int, int]:
    """The concurrent updaters, and increments each, of the suite's counter clause."""
    return _RACES.get(os.environ.get("KVSTORE_HYPOTHESIS_PROFILE", "dev"), _RACES["dev"])


def _active_name() -> str:
    return f"kvstore-{os.environ.get('KVSTORE_HYPOTHESIS_PROFILE', 'dev')}"


def _cap_shrinking() -> None:
    # Hypothesis offers no setting for this; its engine reads a module constant. If a later
    # Hypothesis renames it, shrinking keeps Hypothesis' own cap and pytest-timeout still bounds
    # the test.
    from hypothesis.internal.conjecture import engine

    if getattr(engine, "MAX_SHRINKING_SECONDS", 0) > SHRINK_SECONDS:
        engine.MAX_SHRINKING_SECONDS = SHRINK_SECONDS
