"""Formatting task data (``yadtq.text``) and the dashboard's ``rich.Text`` wrappers over it
(``yadtq_tui.text``)."""

from __future__ import annotations

import shlex
from datetime import UTC, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

import yadtq_tui.text as tui
from yadtq.text import (
    format_arg,
    format_args,
    format_count,
    format_duration,
    format_rate,
    format_timestamp,
    format_value,
    safe_text,
)

CONTROLS = [chr(c) for c in [*range(0x00, 0x20), *range(0x7F, 0xA0)]]
BIDI = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069",
        "\u2028", "\u2029"]


@pytest.mark.parametrize("ch", CONTROLS)
def test_safe_text_escapes_c0_del_and_c1(ch: str) -> None:
    named = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}
    escaped = named.get(ch, "\\x" + format(ord(ch), "02x"))
    assert safe_text(f"a{ch}b") == f"a{escaped}b"


@pytest.mark.parametrize("ch", BIDI)
def test_safe_text_escapes_bidi_overrides_and_line_separators(ch: str) -> None:
    assert safe_text(f"a{ch}b") == f"a\\u{ord(ch):04x}b"


def test_safe_text_known_attacks() -> None:
    assert safe_text("\x1b[2J") == "\\x1b[2J"
    assert safe_text("\x1b]52;c;aGVsbG8=\x07") == "\\x1b]52;c;aGVsbG8=\\x07"
    assert safe_text("ok\r\nFAKE LOG LINE") == "ok\\r\\nFAKE LOG LINE"
    assert safe_text("\x9b31m") == "\\x9b31m"


def test_safe_text_neutralises_surrogates_bom_and_bidi_marks() -> None:
    assert safe_text("a\ud800b\ufeffc\u200fd") == "a\ufffdb\\ufeffc\\u200fd"
    assert safe_text("line1\nline2", keep_newlines=True) == "line1\nline2"


def test_safe_text_keeps_ordinary_text() -> None:
    text = "[red]x[/red] é 中文 🙂 \\x1b tab-free ~!@#$%^&*()"
    assert safe_text(text) == text


def test_safe_text_limit() -> None:
    assert safe_text("abcdef", 4) == "abc…"
    assert safe_text("abcd", 4) == "abcd"
    assert len(safe_text("x" * 100, 10)) == 10
    assert safe_text("\x1b" * 5, 6) == "\\x1b\\…"


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_safe_text_output_never_contains_a_dangerous_character(text: str) -> None:
    out = safe_text(text)
    assert not any(c in out for c in CONTROLS + BIDI)
    if not any(c in text for c in CONTROLS + BIDI) and not any(
            "\ud800" <= c <= "\udfff" or c in "\u061c\u200e\u200f\ufeff" for c in text):
        assert out == text


def test_format_value() -> None:
    assert format_value(None) == ""
    assert format_value("plain \x1b[2J") == "plain \\x1b[2J"
    assert format_value(5) == "5" and format_value(2.5) == "2.5" and format_value(False) == "false"
    assert format_value({"k": ["é", None]}) == '{"k": ["é", null]}'
    assert format_value(["\x07"]) == '["\\u0007"]'
    assert format_value("x" * 50, 10) == "x" * 9 + "…"


@pytest.mark.parametrize("args, shown", [
    ((2, 3), "2 3"),
    (("two words", 3), '"two words" 3'),
    (("",), '""'),
    ((True, None, 1.5, -2), "true null 1.5 -2"),
    (("é",), "é"),
    (("a\x1bb",), "a\\x1bb"),
    (("x y\x1b",), '"x y\\x1b"'),
    (('q"uote',), '"q\\"uote"'),
    (("tab\there",), '"tab\\there"'),
    (("it's",), '"it\'s"'),
    ((["é", 1], {"k": None}), '["é", 1] {"k": null}'),
    ((), ""),
])
def test_format_args(args: tuple[object, ...], shown: str) -> None:
    assert format_args(args) == shown


@pytest.mark.parametrize("args", [("two words", 3), ('say "hi" now', "x"), ("back\\slash here",),
                                  ("", "a"), ("it's",), ("back\\slash",), ('"',)])
def test_format_args_can_be_typed_back(args: tuple[object, ...]) -> None:
    words = shlex.split(format_args(args))
    assert words == [a if isinstance(a, str) else str(a) for a in args]


def test_format_args_limit() -> None:
    assert format_args(("a" * 30,), 10) == "a" * 9 + "…"


def test_format_value_falls_back_to_repr_and_can_keep_newlines() -> None:
    assert format_value({1, 2}) in ("{1, 2}", "{2, 1}")
    assert format_value("a\nb\x1b") == "a\\nb\\x1b"
    assert format_value("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"
    assert format_arg(None) == "null" and format_arg(2.5) == "2.5" and format_arg("") == '""'


@pytest.mark.parametrize(("seconds", "shown"), [
    (-5, "0s"), (0, "0s"), (59.9, "59s"), (61, "1m01s"), (90, "1m30s"), (3725, "1h02m"),
    (90000, "1d01h"),
])
def test_format_duration(seconds: float, shown: str) -> None:
    assert format_duration(seconds) == shown


def test_format_timestamp() -> None:
    epoch = 1732806000.1234  # 2024-11-28 15:00:00.123 UTC
    assert format_timestamp(epoch, UTC) == "2024-11-28 15:00:00.123"
    assert format_timestamp(epoch, UTC, zone=True) == "2024-11-28 15:00:00.123Z"
    cet = timezone(timedelta(hours=1))
    assert format_timestamp(epoch, cet, zone=True) == "2024-11-28 16:00:00.123+01:00"
    assert format_timestamp(epoch, timezone(timedelta(hours=-3, minutes=-30)), zone=True) \
        == "2024-11-28 11:30:00.123-03:30"
    local = format_timestamp(epoch)
    assert len(local) == 23 and local.endswith(":00.123")


def test_format_count_and_rate() -> None:
    assert format_count(12345) == "12,345" and format_count(0) == "0"
    assert [format_rate(r) for r in (0, 0.04, 4.25, 99.9, 1234)] == \
        ["0/s", "0.0/s", "4.2/s", "99.9/s", "1,234/s"]


# ---------------------------------------------------------------- the dashboard's wrappers
@pytest.mark.parametrize(("raw", "shown"), [
    ("\x1b[2J", "\\x1b[2J"),
    ("a\x07b", "a\\x07b"),
    ("line1\nline2\ttab\r", "line1\\nline2\\ttab\\r"),
    ("\x9b31m", "\\x9b31m"),  # C1 CSI
    ("\x7f", "\\x7f"),
    ("safe\u202eevil", "safe\\u202eevil"),  # bidi override
    ("\ud800", "\ufffd"),  # lone surrogate: cannot be encoded at all
    ("[red]x[/red]", "[red]x[/red]"),
    ("héllo ✔ 漢字", "héllo ✔ 漢字"),
])
def test_clean_makes_controls_visible(raw: str, shown: str) -> None:
    assert tui.clean(raw) == shown


def test_clean_limits_length_and_keeps_newlines_on_request() -> None:
    assert tui.clean("x" * 100, 10) == "x" * 9 + "…"
    assert tui.clean("\x1b" * 100, 10) == "\\x1b\\x1b\\…"
    assert tui.clean("a\nb\x1b", keep_newlines=True) == "a\nb\\x1b"
    assert len(tui.clean("y" * 10_000_000, 50)) == 50


def test_literal_is_never_markup() -> None:
    text = tui.literal("[bold red]alert[/]", "red", 40)
    console = Console(width=40, record=True, force_terminal=True)
    console.print(text)
    assert "[bold red]alert[/]" in console.export_text()
    assert str(text.style) == "red"
    assert tui.literal("\x1b[31m").plain == "\\x1b[31m"
    assert tui.literal("a\nb", keep_newlines=True).plain == "a\nb"


def test_the_dashboard_formats_like_the_core() -> None:
    assert tui.format_args((2, 3.5, "a b", "x", None, True)) == '2 3.5 "a b" x null true'
    assert tui.format_args(('q"uote',)) == '"q\\"uote"'
    assert tui.format_value({"a": [1, 2]}) == '{"a": [1, 2]}'
    assert tui.format_value(None) == "" and tui.format_value("s") == "s"
    # line breaks kept for the detail view; literal() escapes them in one-line cells
    assert tui.format_value("a\nb\x1b") == "a\nb\\x1b"
    assert tui.literal(tui.format_value("a\nb"), limit=10).plain == "a\\nb"
    assert tui.format_duration is format_duration and tui.format_count is format_count
    assert tui.format_rate is format_rate and tui.format_time is format_timestamp


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_formatting_twice_changes_nothing(text: str) -> None:
    once = safe_text(text)
    assert safe_text(once) == once
    kept = safe_text(text, keep_newlines=True)
    assert safe_text(kept, keep_newlines=True) == kept
