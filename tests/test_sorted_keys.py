"""The memory driver's chunked key index agrees with a sorted list."""

from __future__ import annotations

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
