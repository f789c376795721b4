"""Terminal-safe text: ``literal``, ``show_value`` and ``show_args``."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from yadtq.text import literal, show_args, show_value

CONTROLS = [chr(c) for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)]]
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",
        "\u2028", "\u2029"]


@pytest.mark.parametrize("ch", CONTROLS)
def test_literal_escapes_c0_del_and_c1(ch: str) -> None:
    named = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
    escaped = named.get(ch, "\\x" + format(ord(ch), "02x"))
    assert literal(f"a{ch}b") == f"a{escaped}b"


@pytest.mark.parametrize("ch", BIDI)
def test_literal_escapes_bidi_overrides_and_line_separators(ch: str) -> None:
    assert literal(f"a{ch}b") == f"a\\u{ord(ch):04x}b"


def test_literal_known_attacks() -> None:
    assert literal("\x1b[2J") == "\\x1b[2J"
    assert literal("\x1b]52;c;aGVsbG8=\x07") == "\\x1b]52;c;aGVsbG8=\\x07"
    assert literal("ok\r\nFAKE LOG LINE") == "ok\\r\\nFAKE LOG LINE"
    assert literal("\x9b31m") == "\\x9b31m"


def test_literal_neutralises_surrogates_bom_and_bidi_marks() -> None:
    assert literal("a\ud800b\ufeffc\u200fd") == "a\ufffdb\\ufeffc\\u200fd"
    assert literal("line1\nline2", keep_newlines=True) == "line1\nline2"


def test_literal_keeps_ordinary_text() -> None:
    text = "[red]x[/red] é 中文 🙂 \\x1b tab-free ~!@#$%^&*()"
    assert literal(text) == text


def test_literal_limit() -> None:
    assert literal("abcdef", 4) == "abc…"
    assert literal("abcd", 4) == "abcd"
    assert len(literal("x" * 100, 10)) == 10
    assert literal("\x1b" * 5, 6) == "\\x1b\\…"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_literal_output_never_contains_a_dangerous_character(text: str) -> None:
    out = literal(text)
    assert not any(c in out for c in CONTROLS + BIDI)
    if not any(c in text for c in CONTROLS + BIDI) and not any(
            "\ud800" <= c <= "\udfff" or c in "\u061c\u200e\u200f\ufeff" for c in text):
        assert out == text


def test_show_value() -> None:
    assert show_value(None) == ""
    assert show_value("plain \x1b[2J") == "plain \\x1b[2J"
    assert show_value(5) == "5" and show_value(2.5) == "2.5" and show_value(False) == "false"
    assert show_value({"k": ["é", None]}) == '{"k": ["é", null]}'
    assert show_value(["\x07"]) == '["\\u0007"]'
    assert show_value("x" * 50, 10) == "x" * 9 + "…"


@pytest.mark.parametrize("args, shown", [
    ((2, 3), "2 3"),
    (("two words", 3), '"two words" 3'),
    (("",), '""'),
    ((True, None, 1.5, -2), "true null 1.5 -2"),
    (("é",), "é"),
    (("a\x1bb",), "a\\x1bb"),
    (("x y\x1b",), '"x y\\u001b"'),
    ((), ""),
])
def test_show_args(args: tuple[object, ...], shown: str) -> None:
    assert show_args(args) == shown


@pytest.mark.parametrize("args", [("two words", 3), ('say "hi" now', "x"), ("back\\slash here",),
                                  ("", "a")])
def test_show_args_can_be_typed_back(args: tuple[object, ...]) -> None:
    words = shlex.split(show_args(args))
    assert words == [a if isinstance(a, str) else str(a) for a in args]


def test_show_args_limit() -> None:
    assert show_args(("a" * 30,), 10) == "a" * 9 + "…"
