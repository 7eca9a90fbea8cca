"""A pytest plugin ``python -m kvstore.testing`` loads: it names each contract clause that broke.

Each suite test is named after a clause and its docstring states it; at the end of a run the
plugin lists the clauses that failed, in words, so a driver author reads what to fix before the
tracebacks.
"""

from __future__ import annotations

import inspect

import pytest

__all__ = ["clause_of"]

_broken: dict[str, str] = {}


def clause_of(item: pytest.Item) -> str:
    """The clause a suite test checks: its docstring's first line, else its name in words."""
    function = getattr(item, "function", None)
    doc = inspect.getdoc(function) if function is not None else None
    if doc:
        return doc.splitlines()[0]
    name = item.name.split("[", 1)[0].removeprefix("test_")
    return name.replace("_", " ")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Remember the clause of every test that fails."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    if report.failed:
        _broken.setdefault(clause_of(item), item.name.split("[", 1)[0])
    return None


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the broken clauses, one line each, with a test to rerun for each."""
    if not _broken:
        return
    terminalreporter.section("contract clauses broken")
    for clause, name in _broken.items():
        terminalreporter.write_line(f"- {clause}")
        terminalreporter.write_line(f"    rerun only this clause: -- -k {name}")
