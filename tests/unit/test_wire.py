"""The Kafka wire format: ``encode``/``decode`` of task envelopes never trust their input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from yadtq import wire
from yadtq.errors import DecodeError
from yadtq.wire import MAX_ARGS, MAX_MESSAGE_BYTES, MAX_STRING_CHARS, Envelope, decode, encode

TASK_ID = "0123456789abcdef0123456789abcdef"


def valid() -> dict[str, Any]:
    return {"v": 1, "id": TASK_ID, "name": "ADD", "args": [2, 3], "created_at": 1732800000.5}


def raw(obj: Any) -> bytes:
    return json.dumps(obj).encode("utf-8")


def with_(**changes: Any) -> bytes:
    obj = valid()
    obj.update(changes)
    return raw(obj)


def without(field: str) -> bytes:
    obj = valid()
    del obj[field]
    return raw(obj)


def reason(data: bytes | None) -> str:
    with pytest.raises(DecodeError) as info:
        decode(data)
    return str(info.value)


def same(a: Envelope, b: Envelope) -> bool:
    """Equal including the types of the arguments (1, 1.0 and True compare equal in Python)."""
    return a == b and [repr(x) for x in a.args] == [repr(x) for x in b.args]


# ---------------------------------------------------------------- round trip
def test_encode_then_decode_gives_the_same_envelope() -> None:
    env = Envelope(TASK_ID, "resize.image", (2, -3.5, "two words", True, None, ""), 1732800000.25)
    data = encode(env)
    assert json.loads(data) == {"v": 1, "id": TASK_ID, "name": "resize.image",
                                "args": [2, -3.5, "two words", True, None, ""],
                                "created_at": 1732800000.25}
    assert same(decode(data), env)
    assert env.encode() == data


def test_decode_accepts_an_integer_created_at_and_returns_a_float() -> None:
    env = decode(with_(created_at=5))
    assert env.created_at == 5.0 and type(env.created_at) is float
    assert env.args == (2, 3) and type(env.args) is tuple


def test_encode_refuses_a_message_over_the_size_limit() -> None:
    env = Envelope(TASK_ID, "X", ("x" * MAX_STRING_CHARS,) * 17, 1.0)
    with pytest.raises(DecodeError, match="bytes; the limit is 65536"):
        encode(env)


@pytest.mark.parametrize("bad", [{"a": 1}, [1], float("nan"), float("inf"), 10**100])
def test_encode_refuses_bad_arguments(bad: Any) -> None:
    with pytest.raises(DecodeError, match="argument 1"):
        encode(Envelope(TASK_ID, "X", (bad,), 1.0))


# ---------------------------------------------------------------- rejections
@pytest.mark.parametrize("data, why", [
    (None, "empty message"),
    (b"", "not UTF-8 JSON"),
    (b"not json", "not UTF-8 JSON"),
    (b"\xff\xfe{}", "not UTF-8 JSON"),
    (b'{"v": 1,', "not UTF-8 JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'"ADD 2 3"', "not a JSON object"),
    (b"42", "not a JSON object"),
    (b"null", "not a JSON object"),
])
def test_decode_rejects_what_is_not_a_json_object(data: bytes | None, why: str) -> None:
    assert why in reason(data)


@pytest.mark.parametrize("version", [2, 0, "1", 1.0, True, None, [1]])
def test_decode_rejects_any_version_but_the_integer_1(version: Any) -> None:
    assert "unsupported wire version" in reason(with_(v=version))


def test_decode_rejects_a_missing_version() -> None:
    assert reason(without("v")) == "unsupported wire version None (this worker reads 1)"


@pytest.mark.parametrize("task_id", [TASK_ID.upper(), TASK_ID[:-1], TASK_ID + "0", "g" * 32,
                                     "../" + TASK_ID[3:], 12345, None, "", "٠" * 32])
def test_decode_rejects_a_bad_id(task_id: Any) -> None:
    assert reason(with_(id=task_id)) == "field 'id' must be 32 lowercase hex characters"


def test_decode_rejects_a_missing_id() -> None:
    assert "field 'id'" in reason(without("id"))


@pytest.mark.parametrize("name", ["__import__('os')", "", "1ADD", "ADD 2", "a/b", "x" * 65,
                                  "ADD\n", "ÄDD", "$(reboot)", 7, None, ["ADD"]])
def test_decode_rejects_a_bad_name(name: Any) -> None:
    assert "field 'name' must be a task name" in reason(with_(name=name))


def test_decode_accepts_a_dotted_name_the_worker_refuses_later() -> None:
    """``os.system`` is a *valid-looking* name on the wire; only the registry knows it is not a
    task (the worker dead-letters it with "unknown task"); nothing is ever imported by name."""
    assert decode(with_(name="os.system")).name == "os.system"
    assert decode(with_(name="x" * 64)).name == "x" * 64


@pytest.mark.parametrize("args", [{"a": 1}, "2 3", None, 5, True])
def test_decode_rejects_args_that_are_not_a_list(args: Any) -> None:
    assert reason(with_(args=args)) == "field 'args' must be a JSON array"


def test_decode_rejects_missing_args() -> None:
    assert reason(without("args")) == "field 'args' must be a JSON array"


def test_decode_limits_the_number_of_arguments() -> None:
    assert decode(with_(args=[1] * MAX_ARGS)).args == (1,) * MAX_ARGS
    assert reason(with_(args=[1] * (MAX_ARGS + 1))) == "too many arguments: 33 (the limit is 32)"


def test_decode_limits_integers_to_100_digits() -> None:
    assert decode(with_(args=[10**100 - 1, -(10**100) + 1])).args == (10**100 - 1, -(10**100) + 1)
    assert reason(with_(args=[1, 10**100])) == "argument 2 has more than 100 digits"
    assert reason(with_(args=[-(10**100)])) == "argument 1 has more than 100 digits"


def test_decode_rejects_a_5000_digit_integer_without_crashing() -> None:
    data = b'{"v":1,"id":"' + TASK_ID.encode() + b'","name":"ADD","args":[' + b"9" * 5000 + \
        b'],"created_at":1}'
    assert "not UTF-8 JSON" in reason(data)


@pytest.mark.parametrize("token", [b"NaN", b"Infinity", b"-Infinity"])
def test_decode_rejects_nan_and_infinity_tokens(token: bytes) -> None:
    in_args = raw(valid()).replace(b"[2, 3]", b"[2, " + token + b"]")
    assert "is not allowed" in reason(in_args)
    in_created = raw(valid()).replace(b"1732800000.5", token)
    assert "is not allowed" in reason(in_created)


def test_decode_rejects_floats_that_overflow_to_infinity() -> None:
    assert reason(raw(valid()).replace(b"[2, 3]", b"[1e400, 3]")) == "argument 1 is not a finite number"
    assert "created_at" in reason(raw(valid()).replace(b"1732800000.5", b"1e400"))


@pytest.mark.parametrize("arg", [{"a": 1}, [1, 2], [], {}])
def test_decode_rejects_nested_arguments(arg: Any) -> None:
    assert reason(with_(args=[1, arg])) == \
        "argument 2 must be a number, a string, true/false or null"


def test_decode_survives_deep_nesting() -> None:
    assert "not UTF-8 JSON" in reason(b"[" * 30000 + b"]" * 30000)
    assert "not UTF-8 JSON" in reason(b'{"a":' * 10000 + b"1" + b"}" * 10000)


def test_decode_limits_string_arguments() -> None:
    assert decode(with_(args=["x" * MAX_STRING_CHARS])).args == ("x" * MAX_STRING_CHARS,)
    assert reason(with_(args=["x" * (MAX_STRING_CHARS + 1)])) == \
        "argument 1 is longer than 4096 characters"


def test_decode_rejects_an_oversized_payload_before_parsing_it() -> None:
    data = raw(valid())[:-1] + b"," + b" " * MAX_MESSAGE_BYTES + b"}"
    assert reason(data) == f"message is {len(data)} bytes; the limit is {MAX_MESSAGE_BYTES}"


def test_decode_rejects_unknown_extra_fields() -> None:
    assert reason(with_(urgency=1, fn="os.system")) == "unknown fields: fn, urgency"


@pytest.mark.parametrize("created", [-1, -0.001, "1732800000", True, None, [1]])
def test_decode_rejects_a_bad_created_at(created: Any) -> None:
    expected = "field 'created_at' must be a non-negative number of epoch seconds"
    assert reason(with_(created_at=created)) == expected


def test_decode_rejects_a_missing_created_at() -> None:
    assert "created_at" in reason(without("created_at"))


# ---------------------------------------------------------------- properties
json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                | st.text(max_size=20))
finite_scalars = (st.none() | st.booleans() | st.integers(-(10**99), 10**99)
                  | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=4), max_leaves=12)
FIELDS = ["v", "id", "name", "args", "created_at", "extra"]


@st.composite
def mutated_envelopes(draw: st.DrawFn) -> bytes:
    obj: dict[str, Any] = valid()
    obj["args"] = draw(st.lists(json_scalars, max_size=5))
    for _ in range(draw(st.integers(0, 3))):
        field = draw(st.sampled_from(FIELDS))
        action = draw(st.sampled_from(["drop", "replace", "arg"]))
        if action == "drop":
            obj.pop(field, None)
        elif action == "replace":
            obj[field] = draw(json_values)
        elif isinstance(obj.get("args"), list):
            obj["args"].append(draw(json_values))
    text = json.dumps(obj, allow_nan=True)
    if draw(st.booleans()):  # damage the bytes too, sometimes
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.text(max_size=3)) + text[cut:]
    return text.encode("utf-8", "surrogatepass")


def _check_round_trip(data: bytes) -> None:
    try:
        env = decode(data)
    except DecodeError:
        return
    again = decode(encode(env))
    assert same(again, env)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
@example(b'{"v":1}')
@example(b"\x00")
def test_random_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    _check_round_trip(data)


@settings(max_examples=400, deadline=None)
@given(mutated_envelopes())
def test_mutated_envelopes_only_ever_raise_decode_error(data: bytes) -> None:
    _check_round_trip(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite_scalars, max_size=MAX_ARGS),
       st.from_regex(wire.NAME_RE, fullmatch=True),
       st.floats(min_value=0, max_value=4e9))
def test_every_valid_envelope_round_trips(args: list[Any], name: str, created: float) -> None:
    env = Envelope(TASK_ID, name, tuple(args), created)
    assert same(decode(encode(env)), env)


def test_what_decode_accepts_can_be_encoded_again() -> None:
    obj = valid()
    obj["args"] = ["é" * 4000] * 4  # 32 kB as UTF-8, 96 kB once every é becomes \u00e9
    data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    env = decode(data)
    assert same(decode(encode(env)), env)


# ---------------------------------------------------------------- totality: DecodeError or Envelope
@pytest.mark.parametrize("created", [10**400, -(10**400), 10**20, 1e300, 2**63])
def test_decode_refuses_a_created_at_that_is_not_a_time(created: int | float) -> None:
    """A JSON integer too large for a float used to raise OverflowError (and drop a whole batch)."""
    data = raw(valid()).replace(b"1732800000.5", str(created).encode())
    assert "created_at" in reason(data)


def test_decode_turns_an_unforeseen_exception_into_decode_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(_args: Any) -> None:
        raise KeyError("nobody expected this")

    monkeypatch.setattr(wire, "check_args", broken)
    assert "malformed message (KeyError" in reason(with_())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**450), max_value=10**450)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children,
                                                                       max_size=4),
    max_leaves=12)


@given(st.dictionaries(st.sampled_from(["v", "id", "name", "args", "created_at", "x"]), json_values,
                       max_size=6))
@settings(max_examples=400, deadline=None)
@example({"v": 1, "id": TASK_ID, "name": "ADD", "args": [], "created_at": 10**400})
def test_decode_is_total_over_json_objects(obj: dict[str, Any]) -> None:
    """Any JSON object (merged over a valid envelope) gives an Envelope or DecodeError, nothing else."""
    data = json.dumps({**valid(), **obj}).encode()
    try:
        env = decode(data)
    except DecodeError:
        return
    assert decode(encode(env)) == env
