"""Shared test configuration: the Hypothesis profile and the anyio backend default."""

from __future__ import annotations

from kvstore.testing.profiles import active_settings, register_profiles

register_profiles()
active_settings()
