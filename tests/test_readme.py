"""Every fenced code block of README.md runs, by the rule written in the README's "Tests" section.

The rule, in short (the README has it in full):

- ```` ```python ```` blocks run as written, each in a fresh interpreter (this one's), in a
  temporary working directory with ``AGENTX_DIR`` pointing at another temporary directory.
- ```` ```bash ```` / ```` ```sh ```` blocks run line by line in bash, in the same kind of
  directory; a command that installs (``pip install``, ``python3 -m venv``) or runs the test
  suite (``python -m pytest``) is left out of its line, since ``.ci/run`` runs those itself.
- ```` ```console ```` blocks run their ``$ `` lines the same way and compare the output shown
  below each (``...`` in a line stands for any text, a line of just ``...`` for any lines).
- ```` ```text ```` blocks are not run. Any other language fails the test.
- ``<!-- needs: SERVER -->`` before a block (``redis``, ``postgresql``, ``mysql``,
  ``mongodb``): the block runs when that server is reachable; otherwise it skips with the
  reason, or fails when ``KVSTORE_REQUIRE_SERVERS=1``.

The working directory holds a link to the repository's ``examples/`` and a ``.venv/bin/python``
that is this interpreter, so blocks written for the repository root run unchanged, and nothing
they write lands in the checkout. Blocks are read when the tests are collected, so a section
someone adds is covered without touching this module.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.support.mongodb_server import MongoDBTarget, mongodb_target
from tests.support.servers import MYSQL_URL, POSTGRESQL_URL, REDIS_URL, server_unreachable

__all__ = ["mongodb_target"]  # the session fixture, imported so pytest finds it here

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

# The languages the rule covers: each either runs or (text) says it is not meant to.
RUN_LANGUAGES = ("python", "bash", "sh", "console")
LANGUAGES = (*RUN_LANGUAGES, "text")

# Each server a block may need, with the address the README writes (SERVICES.md's). The test
# replaces that literal scheme://host:port with the one of the server the tests use: the
# KVSTORE_TEST_*_URL override if set, and for MongoDB the stand-in the tests start.
SERVER_LITERALS = {
    "redis": "redis://127.0.0.1:6379",
    "postgresql": "postgresql://root@127.0.0.1:5432",
    "mysql": "mysql://root@127.0.0.1:3306",
    "mongodb": "mongodb://127.0.0.1:27017",
}
SERVER_URLS = {"redis": REDIS_URL, "postgresql": POSTGRESQL_URL, "mysql": MYSQL_URL}

# Commands .ci/run runs itself (creating the environment, installing, running the tests).
# (Running pytest from a block would also run this module again.)
CI_STEP = re.compile(r"\bpip3? install\b|\bpython3? -m (?:venv|pip|pytest)\b|(?:^|/)pytest(?:\s|$)")

PYTHON_SECONDS = 120  # one python block, start to end
COMMAND_SECONDS = 240  # one shell command (the conformance suite on a server takes ~30 s)

_FENCE = re.compile(r"^(?P<indent> *)(?P<marker>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
_HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*#*\s*$")
_NEEDS = re.compile(r"^\s*<!--\s*needs:\s*(?P<servers>[^>]*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    """One fenced code block of the README."""

    line: int  # of the opening fence, 1-based
    heading: str  # the nearest heading above it
    language: str
    code: str
    needs: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"README.md:{self.line} ({self.heading})"

    @property
    def test_id(self) -> str:
        slug = re.sub(r"[^a-z0-9]+", "-", self.heading.lower()).strip("-")
        return f"line{self.line}-{slug}"


@dataclass(frozen=True)
class Readme:
    """The README's blocks, and the needs comments that precede no block (mistakes)."""

    blocks: tuple[Block, ...]
    stray_needs: tuple[int, ...]
    unclosed: int | None


def parse_readme(text: str) -> Readme:
    """Read every fenced block with its line, heading, language and needs comment."""
    lines = text.splitlines()
    blocks: list[Block] = []
    stray: list[int] = []
    heading = "(top)"
    needs: tuple[str, ...] = ()
    needs_line = 0
    index = 0
    while index < len(lines):
        line = lines[index]
        fence = _FENCE.match(line)
        if fence is not None and fence["marker"][0] == "`" and "`" in line[fence.end() :]:
            fence = None  # inline code at the start of a line (CommonMark: no ` in the info)
        if fence is None:
            found = _NEEDS.match(line)
            if found is not None:
                if needs:
                    stray.append(needs_line)
                needs = tuple(s.strip() for s in found["servers"].split(",") if s.strip())
                needs_line = index + 1
            elif line.strip():
                if needs:  # a needs comment applies only to the block right after it
                    stray.append(needs_line)
                    needs = ()
                title = _HEADING.match(line)
                if title is not None:
                    heading = title["title"]
            index += 1
            continue
        indent, marker = len(fence["indent"]), fence["marker"]
        body: list[str] = []
        end = index + 1
        while end < len(lines) and not _closes(lines[end], marker):
            body.append(lines[end][indent:] if lines[end][:indent].isspace() else lines[end])
            end += 1
        if end == len(lines):
            return Readme(tuple(blocks), tuple(stray), unclosed=index + 1)
        code = "\n".join(body) + "\n"
        blocks.append(Block(index + 1, heading, fence["info"].lower(), code, needs))
        needs = ()
        index = end + 1
    if needs:
        stray.append(needs_line)
    return Readme(tuple(blocks), tuple(stray), unclosed=None)


def _closes(line: str, marker: str) -> bool:
    # CommonMark: the same character, at least as many, nothing else on the line.
    stripped = line.strip()
    return len(stripped) >= len(marker) and set(stripped) == {marker[0]}


README_TEXT = README.read_text(encoding="utf-8")
PARSED = parse_readme(README_TEXT)
RUNNABLE = [block for block in PARSED.blocks if block.language in RUN_LANGUAGES]


# -- the rule itself ----------------------------------------------------------------------------


def test_every_block_has_a_language_the_rule_covers() -> None:
    assert PARSED.unclosed is None, f"README.md:{PARSED.unclosed}: a code fence is never closed"
    unknown = [
        f"{block.where}: {block.language or '(none)'}"
        for block in PARSED.blocks
        if block.language not in LANGUAGES
    ]
    assert not unknown, (
        f"blocks in a language the README rule does not cover ({', '.join(LANGUAGES)}); "
        f"use text for a block not meant to run: {unknown}"
    )


def test_every_needs_comment_names_known_servers_and_precedes_a_block() -> None:
    assert not PARSED.stray_needs, (
        f"README.md lines {list(PARSED.stray_needs)}: a needs comment must come right before "
        "the block it applies to"
    )
    unknown = [
        f"{block.where}: {server}"
        for block in PARSED.blocks
        for server in block.needs
        if server not in SERVER_LITERALS
    ]
    assert not unknown, f"needs names a server the tests do not know: {unknown}"


def test_a_block_that_names_a_server_says_it_needs_it() -> None:
    # Without the comment it would fail where the server is down instead of skipping, and would
    # not be pointed at the server the tests use.
    undeclared = [
        f"{block.where}: {server}"
        for block in RUNNABLE
        for server, literal in SERVER_LITERALS.items()
        if literal in block.code and server not in block.needs
    ]
    assert not undeclared, f"blocks that use a server without <!-- needs: -->: {undeclared}"


def test_the_tests_section_states_the_rule() -> None:
    tests_section = README_TEXT.partition("\n## Tests\n")[2].partition("\n## ")[0]
    assert "tests/test_readme.py" in tests_section
    for needed in ("<!-- needs:", "`text`", "`console`", "pip install", "KVSTORE_REQUIRE_SERVERS"):
        assert needed in tests_section, f"the README's Tests section no longer says {needed!r}"


def test_the_parser_reads_languages_needs_and_headings() -> None:
    readme = parse_readme(
        "# Top\n\n## Part\n<!-- needs: redis -->\n```python\nprint(1)\n```\n\n"
        "- item:\n\n  ```bash\n  kvstore get a\n  ```\n```\nbare\n```\n"
        "<!-- needs: mysql -->\n\ntext\n```` ```python ```` is inline code\n"
    )
    assert [(b.line, b.heading, b.language, b.code, b.needs) for b in readme.blocks] == [
        (5, "Part", "python", "print(1)\n", ("redis",)),
        (11, "Part", "bash", "kvstore get a\n", ()),
        (14, "Part", "", "bare\n", ()),
    ]
    assert readme.stray_needs == (17,)
    assert parse_readme("```python\nopen\n").unclosed == 1


def test_ci_steps_are_left_out_of_a_line() -> None:
    assert _without_ci_steps(
        "python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/python examples/q.py"
    ) == ".venv/bin/python examples/q.py"
    assert _without_ci_steps(".venv/bin/pip install -e . && .venv/bin/python -m pytest") == ""
    assert _without_ci_steps("pytest -m chaos") == ""
    assert _without_ci_steps("kvstore check  # pytest is not run here") == (
        "kvstore check  # pytest is not run here"
    )


def test_console_output_matching() -> None:
    assert _output_matches(["a", "...", "d"], "a\nb\nc\nd\n")
    assert _output_matches(["a", "..."], "a\n")
    assert not _output_matches(["a", "d"], "a\nb\nd\n")
    assert not _output_matches(["a"], "a\nextra\n")
    assert _output_matches(["saved to .../x.db", ""], "saved to /tmp/a/x.db\n")
    assert not _output_matches(["saved to .../x.db"], "saved to /tmp/a/y.db\n")


# -- running the blocks -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, id=b.test_id) for b in RUNNABLE if b.language == "python"],
)
def test_python_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    _run_python_block(block, tmp_path, request)


# A block as the README would write it for each server the rule names, with SERVICES.md's URL:
# proves the substitution reaches the server the tests use, also for servers no block needs yet.
SERVER_CHECK = """
import uuid
import anyio
from kvstore import create_storage

async def main() -> None:
    async with create_storage("URL") as storage:
        key = f"readme:{uuid.uuid4().hex}"
        await storage.set(key, {"ok": True})
        assert await storage.get(key) == {"ok": True}
        await storage.delete(key)

anyio.run(main)
"""
SERVER_CHECK_URLS = {
    "redis": "redis://127.0.0.1:6379/0",
    "postgresql": "postgresql://root@127.0.0.1:5432/test",
    "mysql": "mysql://root@127.0.0.1:3306/test",
    "mongodb": "mongodb://127.0.0.1:27017/readme_check",
}


@pytest.mark.parametrize("server", sorted(SERVER_LITERALS))
def test_a_block_that_needs_a_server_reaches_the_one_the_tests_use(
    server: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    code = SERVER_CHECK.replace("URL", SERVER_CHECK_URLS[server])
    block = Block(0, f"a {server} block", "python", code, needs=(server,))
    _run_python_block(block, tmp_path, request)


def _run_python_block(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    code = _with_servers(block, request)
    work = _workspace(tmp_path)
    script = work / "readme_block.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, script.name],
        cwd=work,
        env=_environment(tmp_path),
        capture_output=True,
        text=True,
        timeout=PYTHON_SECONDS,
        check=False,
    )
    assert done.returncode == 0, _failure(block, code, done)


@pytest.mark.timeout(900)
@pytest.mark.parametrize(
    "block",
    [pytest.param(b, id=b.test_id) for b in RUNNABLE if b.language != "python"],
)
def test_shell_block_runs(block: Block, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    code = _with_servers(block, request)
    commands = _console_commands(code) if block.language == "console" else _shell_commands(code)
    runnable = [(command, shown) for command, shown in commands if command]
    if not runnable:
        pytest.skip(f"{block.where}: only CI steps (install, run pytest), which .ci/run runs")
    work = _workspace(tmp_path)
    environment = _environment(tmp_path)
    bash = shutil.which("bash") or "/bin/bash"
    for command, shown in runnable:
        done = subprocess.run(
            [bash, "-c", f"set -euo pipefail\n{command}"],
            cwd=work,
            env=environment,
            capture_output=True,
            text=True,
            timeout=COMMAND_SECONDS,
            check=False,
        )
        assert done.returncode == 0, _failure(block, command, done)
        if shown is not None:
            assert _output_matches(shown, done.stdout), (
                f"{block.where}: `{command}` printed\n{done.stdout}\nbut the README shows\n"
                + "\n".join(shown)
            )


def _shell_commands(code: str) -> list[tuple[str, list[str] | None]]:
    """Each line of a bash block (continuations joined) without its CI steps; no output shown."""
    commands: list[tuple[str, list[str] | None]] = []
    for line in code.replace("\\\n", " ").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            commands.append((_without_ci_steps(line), None))
    return commands


def _console_commands(code: str) -> list[tuple[str, list[str] | None]]:
    """The ``$ `` lines of a console block, each with the output lines shown after it."""
    commands: list[tuple[str, list[str] | None]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            commands.append((_without_ci_steps(line[2:]), []))
        elif commands:
            shown = commands[-1][1]
            assert shown is not None
            shown.append(line.rstrip())
    # An empty shown output is still compared: the command must print nothing.
    return [(command, shown if command else None) for command, shown in commands]


def _without_ci_steps(line: str) -> str:
    """The line's ``&&`` chain without the commands .ci/run runs itself ("" if nothing is left)."""
    kept = [part.strip() for part in line.split(" && ") if not CI_STEP.search(part)]
    return " && ".join(part for part in kept if part)


def _output_matches(shown: list[str], printed: str) -> bool:
    while shown and not shown[-1]:
        shown = shown[:-1]
    pattern = "".join(
        "(?:.*\n)*" if line == "..." else ".*".join(map(re.escape, line.split("..."))) + "\n"
        for line in shown
    )
    actual = "".join(line.rstrip() + "\n" for line in printed.splitlines())
    return re.fullmatch(pattern, actual) is not None


def _with_servers(block: Block, request: pytest.FixtureRequest) -> str:
    """The block's code aimed at the servers it needs; skips (or fails) when one is down."""
    code = block.code
    for server in block.needs:
        if server == "mongodb":
            target: MongoDBTarget = request.getfixturevalue("mongodb_target")
            url = target.url
        else:
            url = SERVER_URLS[server]
            _check_reachable(server, url)
        parts = urlsplit(url)
        code = code.replace(SERVER_LITERALS[server], f"{parts.scheme}://{parts.netloc}")
    return code


def _check_reachable(server: str, url: str) -> None:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 0), 3):
            pass
    except OSError as error:
        server_unreachable(f"{server} at {parts.hostname}:{parts.port} is unreachable: {error}")


def _workspace(tmp_path: Path) -> Path:
    """A working directory that looks like the repository root to a block, and is not it."""
    work = tmp_path / "work"
    (work / ".venv" / "bin").mkdir(parents=True)
    (work / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    _shim(work / ".venv" / "bin" / "python", f'exec "{sys.executable}" "$@"')
    return work


def _environment(tmp_path: Path) -> dict[str, str]:
    """This process's environment, with a temporary AGENTX_DIR and this install on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "python3"):
        _shim(bin_dir / name, f'exec "{sys.executable}" "$@"')
    console_script = Path(sys.executable).with_name("kvstore")
    if console_script.is_file():
        (bin_dir / "kvstore").symlink_to(console_script)
    else:  # run from an interpreter without the console script: the module it calls
        _shim(bin_dir / "kvstore", f'exec "{sys.executable}" -m kvstore.cli "$@"')
    return dict(
        os.environ,
        AGENTX_DIR=str(tmp_path / "agentx"),
        PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        # The conformance suite a block runs: the README shows it works, the suite's own tests
        # run it in full.
        KVSTORE_HYPOTHESIS_PROFILE="quick",
    )


def _shim(path: Path, command: str) -> None:
    path.write_text(f"#!/bin/sh\n{command}\n", encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _failure(block: Block, code: str, done: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{block.where} ({block.language}) exited with {done.returncode}\n"
        f"--- code ---\n{code}\n--- stdout ---\n{done.stdout[-3000:]}\n"
        f"--- stderr ---\n{done.stderr[-3000:]}"
    )
