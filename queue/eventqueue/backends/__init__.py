"""Storage backends of the event queue, all behind :class:`QueueBackend`.

The queue front (``eventqueue.front``) does validation, subscriber fan-out, consumers,
retention timing and the closed state once; a backend only stores and reads.
"""

from __future__ import annotations

from eventqueue.backends.base import QueueBackend

__all__ = ["QueueBackend"]
