"""The memory driver's chunked key index agrees with a sorted list."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
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


_MIXED = st.lists(
    st.tuples(st.sampled_from(["add", "remove", "page"]), st.integers(0, 3 * CHUNK)), max_size=300
)


@settings(max_examples=200)  # pure and fast; the waiting adds and removals need variety
@given(_MIXED, st.integers(min_value=1, max_value=4 * CHUNK))
def test_pages_between_writes_agree_with_a_sorted_set(
    operations: list[tuple[str, int]], limit: int
) -> None:
    """Adds and removals wait until a page: pages taken between them still see exactly the keys."""
    index, model = SortedKeys(), set[str]()
    for operation, number in operations:
        key = f"{number:05d}"
        if operation == "add" and key not in model:
            index.add(key)
            model.add(key)
        elif operation == "remove" and key in model:
            index.remove(key)
            model.discard(key)
        elif operation == "page":
            expected = sorted(item for item in model if item >= key)[:limit]
            assert index.page(key, inclusive=True, below=None, limit=limit) == expected
    assert _everything(index) == sorted(model)


def test_a_merge_of_many_keys_into_few_chunks_splits_them() -> None:
    index = SortedKeys()
    first = [f"{number:06d}" for number in range(0, 10 * CHUNK, 10)]
    for key in first:
        index.add(key)
    assert _everything(index) == first
    second = [f"{number:06d}" for number in range(10 * CHUNK) if number % 10]
    for key in reversed(second):
        index.add(key)
    everything = sorted(first + second)
    assert _everything(index) == everything
    assert index.page(everything[CHUNK * 7], inclusive=False, below=None, limit=5) == (
        everything[CHUNK * 7 + 1 : CHUNK * 7 + 6]
    )
    remaining = True
    while remaining:
        remaining = index.drop_chunk()
    assert _everything(index) == []


def test_removals_wait_and_apply_a_few_or_many_per_chunk() -> None:
    index = SortedKeys()
    keys = [f"{number:06d}" for number in range(4 * CHUNK)]
    for key in keys:
        index.add(key)
    assert _everything(index) == keys  # ordered now: removals from here on wait
    few = keys[:3]  # a few in the first chunk: removed one by one
    many = keys[2 * CHUNK : 3 * CHUNK]  # a whole chunk: removed in one pass
    for key in few + many:
        index.remove(key)
    index.add(many[7])  # removed, then added back before any page
    expected = [key for key in keys if key not in few and key not in many] + [many[7]]
    assert _everything(index) == sorted(expected)
    for key in sorted(expected):
        index.remove(key)
    assert _everything(index) == []
    index.add("again")
    assert _everything(index) == ["again"]


def test_insertions_go_in_a_few_or_many_per_chunk() -> None:
    index = SortedKeys()
    keys = [f"{number:06d}0" for number in range(4 * CHUNK)]
    for key in keys:
        index.add(key)
    assert _everything(index) == keys  # ordered in chunks now
    # A few keys landing in the middle of one chunk, in descending order: each put in its place.
    few = [f"{number:06d}5" for number in (CHUNK + 9, CHUNK + 3, CHUNK + 1)]
    # Many landing in another chunk, unordered: merged by one sort.
    many = [f"{number:06d}5" for number in range(3 * CHUNK + 200, 3 * CHUNK, -1)]
    for key in few + many:
        index.add(key)
    assert _everything(index) == sorted(keys + few + many)
    start = f"{CHUNK:06d}"
    assert index.page(start, inclusive=True, below=f"{CHUNK + 4:06d}", limit=10) == [
        f"{CHUNK:06d}0", f"{CHUNK + 1:06d}0", f"{CHUNK + 1:06d}5", f"{CHUNK + 2:06d}0",
        f"{CHUNK + 3:06d}0", f"{CHUNK + 3:06d}5",
    ]


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


_BATCHED = st.lists(
    st.tuples(
        st.sampled_from(["add_many", "remove", "page"]),
        st.lists(st.integers(0, 3 * CHUNK), max_size=40),
    ),
    max_size=60,
)


@settings(max_examples=200)
@given(_BATCHED)
def test_add_many_agrees_with_a_sorted_set(operations: list[tuple[str, list[int]]]) -> None:
    """add_many takes repeats and keys whose removal still waits, like add does one by one."""
    index, model = SortedKeys(), set[str]()
    for operation, numbers in operations:
        keys = [f"{number:05d}" for number in numbers]
        if operation == "add_many":
            index.add_many(key for key in keys if key not in model)
            model.update(keys)
        elif operation == "remove":
            for key in dict.fromkeys(keys):
                if key in model:
                    index.remove(key)
                    model.discard(key)
        else:
            assert _everything(index) == sorted(model)
    assert _everything(index) == sorted(model)


@settings(max_examples=300)
@given(
    st.sets(st.integers(0, 6 * CHUNK), max_size=5 * CHUNK),
    st.integers(0, 6 * CHUNK),
    st.integers(0, 6 * CHUNK),
    st.booleans(),
    st.integers(min_value=1, max_value=3 * CHUNK),
)
def test_pages_stop_at_their_bound_wherever_it_falls(
    numbers: set[int], after: int, below: int, inclusive: bool, limit: int
) -> None:
    """The bound is found by bisection in its chunk: a page agrees with a filtered sorted list,
    whether the bound falls in the first chunk taken, a later one, or beyond the limit."""
    index = SortedKeys()
    index.add_many(f"{number:05d}" for number in numbers)
    start, bound = f"{after:05d}", f"{below:05d}"
    expected = [
        key
        for key in sorted(f"{number:05d}" for number in numbers)
        if (key >= start if inclusive else key > start) and key < bound
    ][:limit]
    assert index.page(start, inclusive=inclusive, below=bound, limit=limit) == expected
