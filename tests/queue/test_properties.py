"""Property tests: any valid topic and any plain-JSON event read back equal; the rest is refused.

Example counts come from the project's active Hypothesis profile (bounded in CI, and with no
per-example deadline, so a loaded machine cannot fail them by slowness).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from eventqueue import ValidationError, create_queue
from eventqueue.validation import MAX_NAME_BYTES
from hypothesis import given
from hypothesis import strategies as st

from kvstore.testing.profiles import active_settings

_CONTROL = {*range(0x20), *range(0x7F, 0xA0)}

topics = st.text(
    st.characters(blacklist_categories=["Cs"], blacklist_characters=[chr(c) for c in _CONTROL]),
    min_size=1,
    max_size=40,
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@active_settings()
@given(topic=topics, events=st.lists(json_values, min_size=1, max_size=5))
def test_any_valid_topic_and_json_event_read_back_equal(topic: str, events: list[Any]) -> None:
    async def scenario() -> None:
        async with create_queue(":memory:") as queue:
            cursors = await queue.publish_many(topic, events)
            cursors.append(await queue.publish(topic, events[0]))
            entries = await queue.recover(topic)
            assert [e.cursor for e in entries] == cursors
            assert all(e.topic == topic for e in entries)
            assert [e.event for e in entries] == [*events, events[0]]

    asyncio.run(scenario())


@active_settings()
@given(
    topic=st.one_of(
        st.just(""),
        st.text(min_size=1, max_size=5).map(lambda s: s + chr(sorted(_CONTROL)[len(s) % 65])),
        st.text(min_size=MAX_NAME_BYTES + 1, max_size=MAX_NAME_BYTES + 5),
    )
)
def test_invalid_topics_refused_and_nothing_written(topic: str) -> None:
    async def scenario() -> None:
        async with create_queue(":memory:") as queue:
            with pytest.raises(ValidationError):
                await queue.publish(topic, 1)
            assert await queue.recover("t") == []

    asyncio.run(scenario())
