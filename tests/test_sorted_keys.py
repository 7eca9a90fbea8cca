"""The memory driver's chunked key index agrees with a sorted list."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kvstore.drivers._sorted_keys import CHUNK, SortedKeys

_OPERATIONS = st.lists(
    st.tuples(st.booleans(), st.integers(min_value=0, max_value=3 * CHUNK)), max_size=400
)


def _everything(index: SortedKeys) -> list[str]:
    return index.page("", inclusive=True, below=None, limit=10**9)


@given(_OPERATIONS)
def test_index_agrees_with_a_sorted_set(operations: list[tuple[bool, int]]) -> None:
    index, model = SortedKeys(), set[str]()
    for adding, number in operations:
        key = f"{number:05d}"
        if adding and key not in model:
            index.add(key)
            model.add(key)
        elif not adding and key in model:
            index.remove(key)
            model.discard(key)
    assert _everything(index) == sorted(model)


def test_index_splits_chunks_and_pages_across_them() -> None:
    index = SortedKeys()
    keys = [f"{number:06d}" for number in range(5 * CHUNK)]
    for key in reversed(keys):
        index.add(key)
    assert _everything(index) == keys
    assert (
        index.page(keys[CHUNK], inclusive=False, below=keys[CHUNK + 4], limit=10)
        == keys[CHUNK + 1 : CHUNK + 4]
    )
    assert index.page("", inclusive=True, below=None, limit=3) == keys[:3]
    for key in keys[::2]:
        index.remove(key)
    assert _everything(index) == keys[1::2]


class _CountingKey(str):
    """A key that counts the comparisons made against it, to measure work without timing."""

    comparisons = 0

    def _count(self, other: object, result: bool) -> bool:
        type(self).comparisons += 1
        return result

    def __lt__(self, other: str) -> bool:
        return self._count(other, str(self) < other)

    def __gt__(self, other: str) -> bool:
        return self._count(other, str(self) > other)

    def __le__(self, other: str) -> bool:
        return self._count(other, str(self) <= other)

    def __ge__(self, other: str) -> bool:
        return self._count(other, str(self) >= other)


@pytest.mark.parametrize("stored", [1_000, 100_000])
def test_a_prefix_page_costs_log_n_plus_the_matches(stored: int) -> None:
    index = SortedKeys()
    for number in range(stored):
        index.add(f"user:{number:06d}")
    _CountingKey.comparisons = 0
    start, below = _CountingKey("user:00050"), _CountingKey("user:00051")
    found = index.page(start, inclusive=True, below=below, limit=1_000)
    assert found == [f"user:{number:06d}" for number in range(500, 510)]
    # Two bisections (over chunk ends, then within one chunk) and one bound check per key.
    assert len(found) < _CountingKey.comparisons <= 2 * (stored.bit_length() + 1) + len(found) + 1
