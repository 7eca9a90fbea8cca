"""Passwords never leave redact_url; everything else is kept as written."""

from __future__ import annotations

import pytest

from kvstore.urls import redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql://root:hunter2@db:5432/app", "postgresql://root:***@db:5432/app"),
        ("redis://:hunter2@cache:6379/0", "redis://:***@cache:6379/0"),
        ("mysql://user@db/app", "mysql://user@db/app"),
        ("sqlite:////abs/path.db", "sqlite:////abs/path.db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("memory://", "memory://"),
        (
            "postgresql://db/app?sslmode=require&password=hunter2",
            "postgresql://db/app?sslmode=require&password=***",
        ),
        ("mongodb://u:p%40ss@h/?authSource=admin", "mongodb://u:***@h/?authSource=admin"),
    ],
)
def test_redact_url_masks_only_secrets(url: str, expected: str) -> None:
    assert redact_url(url) == expected
    assert "hunter2" not in redact_url(url)
