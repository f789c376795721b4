"""README.md and ``--help`` agree with the CLI's real parser.

Every ``yadtq ...`` command in README.md's shell code blocks and in its CLI table is parsed with
``yadtq.cli.build_parser()`` (never executed); the table's summaries and the exit codes are the
CLI's own (``COMMANDS``, ``EXIT_MEANINGS``); every ``--help`` runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
from pathlib import Path

import pytest

from yadtq import cli

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
SHELL_LANGS = {"sh", "bash", "shell", "console"}  # unlabelled blocks are diagrams and output
FAKE_ID = "0123456789abcdef0123456789abcdef"


def section(title: str) -> str:
    start = README.index(f"\n## {title}")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def shell_lines(text: str) -> list[str]:
    """The lines of the fenced code blocks in a shell language."""
    lines: list[str] = []
    for lang, body in re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.M | re.S):
        if lang in SHELL_LANGS:
            lines += body.splitlines()
    return lines


def commands_in(line: str) -> list[list[str]]:
    """The argument lists given to ``yadtq`` on one shell line, ``$( ... )`` included."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    tokens = list(lexer)
    found: list[list[str]] = []
    for token in tokens:  # eval "$(yadtq completion bash)": look inside the substitution
        for inner in re.findall(r"\$\(([^)]*)\)", token):
            found += commands_in(inner)
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token and set(token) <= set("();<>|&"):
            names = [i for i, t in enumerate(segment) if t.rsplit("/", 1)[-1] == "yadtq"]
            if names:
                found.append(segment[names[0] + 1:])
            segment = []
        else:
            segment.append(token)
    return found


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def option_strings(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse like ``yadtq`` would, failing the test on a usage error (argparse exits 2)."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            return cli.build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"yadtq {shlex.join(argv)}: exit {exc.code}: {err.getvalue().strip()}")


def table_rows() -> list[tuple[str, str]]:
    """``(synopsis, summary)`` for each row of the CLI section's table, markdown removed."""
    rows = []
    for cells in re.findall(r"^\| `(yadtq [^`]*)` \| (.*) \|$", section("CLI: `yadtq`"), flags=re.M):
        synopsis, summary = cells
        rows.append((synopsis.replace("\\|", "|"), summary.replace("`", "")))
    return rows


def expand(synopsis: str) -> list[list[str]]:
    """Concrete command lines for a synopsis: optional parts included, each ``a|b`` alternative,
    placeholders filled with a value the option accepts."""
    words = synopsis.replace("[", " ").replace("]", " ").split()[1:]
    variants: list[list[str]] = [[]]
    for word in words:
        variants = [v + [alt] for v in variants for alt in word.split("|")]
    parser = cli.build_parser()
    out = []
    for argv in variants:
        sub = subparsers(parser)[argv[0]]
        actions = {s: a for a in sub._actions for s in a.option_strings}
        filled: list[str] = []
        for i, word in enumerate(argv):
            before = actions.get(argv[i - 1]) if i else None
            if before is not None and before.nargs != 0:
                filled.append(str(before.choices[0]) if before.choices else "1")  # type: ignore[index]
            elif word == "ID":
                filled.append(FAKE_ID)
            else:
                filled.append(word)
        out.append(filled)
    return out


README_COMMANDS = [argv for line in shell_lines(README) for argv in commands_in(line)]


def test_the_readme_has_yadtq_examples_to_check() -> None:
    assert len(README_COMMANDS) >= 8, README_COMMANDS
    assert {argv[0] for argv in README_COMMANDS if argv} >= {"submit", "tasks", "workers",
                                                              "completion"}


@pytest.mark.parametrize("argv", README_COMMANDS, ids=shlex.join)
def test_every_readme_example_parses(argv: list[str]) -> None:
    args = parse(argv)
    assert args.handler is next(c.handler for c in cli.COMMANDS if c.name == args.command)


def test_commands_in_finds_commands_inside_shell_syntax() -> None:
    assert commands_in('eval "$(yadtq completion bash)"  # in ~/.bashrc') == [["completion", "bash"]]
    assert commands_in("docker compose run --rm dashboard yadtq tasks") == [["tasks"]]
    assert commands_in('.venv/bin/yadtq submit ADD 2 3 > out # x') == [["submit", "ADD", "2", "3"]]
    assert commands_in("yadtq-worker --tasks mypkg.tasks") == []
    assert shell_lines("```python\nfrom yadtq import task\n```\n```sh\nyadtq tasks\n```\n") \
        == ["yadtq tasks"]


def test_the_table_lists_every_command_with_its_help_text() -> None:
    rows = table_rows()
    assert [s for s, _ in rows] == [f"yadtq {c.synopsis}" for c in cli.COMMANDS]
    assert [summary for _, summary in rows] == [c.summary for c in cli.COMMANDS]


@pytest.mark.parametrize("synopsis", [s for s, _ in table_rows()])
def test_every_synopsis_parses_and_names_real_flags(synopsis: str) -> None:
    parser = cli.build_parser()
    for argv in expand(synopsis):
        parse(argv)
        flags = [w for w in argv if w.startswith("-")]
        assert set(flags) <= option_strings(subparsers(parser)[argv[0]]), argv


def test_every_flag_in_the_cli_section_exists() -> None:
    parser = cli.build_parser()
    known = option_strings(parser).union(*(option_strings(p) for p in subparsers(parser).values()))
    named = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", section("CLI: `yadtq`")))
    assert named and named <= known, named - known


def test_the_exit_codes_are_the_clis() -> None:
    text = " ".join(section("CLI: `yadtq`").replace("`", "").split())
    listed = re.search(r"Exit codes: (.*?)\. Errors", text)
    assert listed is not None
    assert listed.group(1) == "; ".join(f"{c} {m}" for c, m in cli.EXIT_MEANINGS.items())


def run_help(*argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([*argv, "--help"])
    assert (code, err.getvalue()) == (0, ""), argv
    return out.getvalue()


def test_main_help_lists_every_command_and_exit_code() -> None:
    text = run_help()
    assert text.startswith("usage: yadtq ")
    for command in cli.COMMANDS:
        assert f"yadtq {command.synopsis}" in text
        assert command.name in text
    for code, meaning in cli.EXIT_MEANINGS.items():
        assert re.search(rf"^  {code}  {re.escape(meaning)}$", text, flags=re.M), meaning
    for flag in ("--version", "--tasks", "--redis-url", "--kafka-bootstrap"):
        assert flag in text


@pytest.mark.parametrize("command", cli.COMMANDS, ids=lambda c: c.name)
def test_every_command_help_runs(command: cli.Command) -> None:
    text = run_help(command.name)
    assert text.startswith(f"usage: yadtq {command.name}")
    assert " ".join((command.description or command.summary).split()) in " ".join(text.split())
