"""The environment variables through which ``python -m kvstore.testing`` configures the suite."""

from __future__ import annotations

URL_VARIABLE = "KVSTORE_CONFORMANCE_URL"
EPHEMERAL_VARIABLE = "KVSTORE_CONFORMANCE_EPHEMERAL"
