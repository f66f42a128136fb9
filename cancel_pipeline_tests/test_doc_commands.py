"""The commands the README and docs/ tell a user to type work from a fresh clone as written.

A command in a shell block must call the project's virtual environment (`.venv/bin/...`, which `make`
creates), never a bare `dagster` or `python` that is not on a fresh machine's PATH. Each such command's
program and subcommand must exist: it is run with `--help` (so nothing touches a store or a warehouse).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV_BIN = Path(sys.executable).parent
# Deployment commands run inside the image (docs/deployment.md), where the tools are on the PATH.
INSIDE_THE_IMAGE = {"deployment.md"}


def shell_lines(page: Path) -> list[str]:
    """The commands of a page's ```bash blocks, continuation lines joined, comments dropped."""
    commands, block, pending = [], False, ""
    for line in page.read_text().splitlines():
        if line.strip().startswith("```"):
            block = line.strip() in ("```bash", "```sh", "```shell")
            continue
        if not block:
            continue
        text = pending + line.strip()
        if text.endswith("\\"):
            pending = text[:-1] + " "
            continue
        pending = ""
        text = text.split(" #", 1)[0].strip()
        if text and not text.startswith("#"):
            commands.append(text)
    return commands


def program_words(command: str) -> list[str]:
    """The command's words after any leading `NAME=value` assignments."""
    return [word for word in shlex.split(command) if not re.match(r"^[A-Z_]+=", word)]


def documented_commands() -> list[tuple[str, str]]:
    return [
        (page.name, command)
        for page in PAGES
        if page.name not in INSIDE_THE_IMAGE
        for command in shell_lines(page)
        if program_words(command)[0] not in ("make", "export", "cd", "git")
    ]


def test_the_docs_have_commands_to_check() -> None:
    assert len(documented_commands()) >= 5


@pytest.mark.parametrize(("page", "command"), documented_commands())
def test_a_documented_command_calls_the_project_environment(page: str, command: str) -> None:
    words = program_words(command)
    assert words[0].startswith(".venv/bin/"), f"{page}: `{command}` needs `.venv/bin/{words[0]}`"


def help_command(command: str) -> list[str] | None:
    """The command cut to its program and subcommands, with `--help`; None for one that runs code inline."""
    words = program_words(command)
    program = str(VENV_BIN / words[0].removeprefix(".venv/bin/"))
    rest = words[1:]
    if rest[:1] == ["-c"]:
        return None
    if rest[:1] == ["-m"]:
        head, rest = [program, "-m", rest[1]], rest[2:]
    else:
        head = [program]
    subcommands = []
    for word in rest:
        if word.startswith("-") or "<" in word:
            break
        subcommands.append(word)
    return [*head, *subcommands[:3], "--help"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("page", "command"), documented_commands())
def test_a_documented_command_exists(page: str, command: str, tmp_path: Path) -> None:
    argv = help_command(command)
    if argv is None:
        pytest.skip("an inline script: its modules are imported by the other tests")
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=100, check=False)
    assert done.returncode == 0, f"{page}: `{' '.join(argv)}` failed:\n{done.stderr[-2000:]}"
