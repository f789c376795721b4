"""The JSON wire format of a task message on Kafka (JSON only: no code objects, ever).

An envelope is a JSON object::

    {"v": 1, "id": "<32 hex>", "name": "ADD", "args": [2, 3], "created_at": 1732800000.123}

plus ``"queue": "emails"`` for a task of a named queue (``yadtq.keys.check_queue``) and
``"priority": "high"`` (or ``"low"``); a message without them is of the ``default`` queue at
``normal`` priority, which are never written out: such a message is the same bytes as before
queues existed.

``decode`` never trusts its input: it checks the version, every type and every size, and raises
``DecodeError`` with one clear reason. It does not check that the task name is registered: that is the
worker's job (``Registry.validate``), so that the reason can say "unknown task".
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from yadtq.errors import DecodeError
from yadtq.keys import DEFAULT_PRIORITY, DEFAULT_QUEUE, check_priority, check_queue

WIRE_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
"""Largest encoded task message."""
MAX_ARGS = 32
"""Most arguments one task takes."""
MAX_STRING_CHARS = 4096
"""Longest string argument."""
MAX_INT_DIGITS = 100
"""Largest integer argument, in decimal digits (keeps MUL and friends cheap)."""

MAX_TIMESTAMP = 1e11
"""Largest ``created_at`` (epoch seconds; the year 5138): anything larger is not a time."""

_INT_LIMIT = 10**MAX_INT_DIGITS
_ID_RE = re.compile(r"[0-9a-f]{32}", re.ASCII)
NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,63}", re.ASCII)


@dataclass(frozen=True)
class Envelope:
    """What travels through Kafka: the task's identity and input, nothing else."""

    id: str
    name: str
    args: tuple[Any, ...]
    created_at: float
    queue: str = DEFAULT_QUEUE
    priority: str = DEFAULT_PRIORITY

    def encode(self) -> bytes:
        return encode(self)


def encode(env: Envelope) -> bytes:
    """The envelope as JSON bytes; ``DecodeError`` if it would not pass ``decode``."""
    if not _ID_RE.fullmatch(env.id):
        raise DecodeError("task id must be 32 lowercase hex characters")
    if not NAME_RE.fullmatch(env.name):
        raise DecodeError(f"invalid task name {env.name[:70]!r}")
    if not math.isfinite(env.created_at) or not 0 <= env.created_at <= MAX_TIMESTAMP:
        raise DecodeError("created_at must be a non-negative number of epoch seconds")
    try:
        check_queue(env.queue)
        check_priority(env.priority)
        check_args(env.args)
    except ValueError as exc:
        raise DecodeError(str(exc)) from None
    obj = {"v": WIRE_VERSION, "id": env.id, "name": env.name, "args": list(env.args),
           "created_at": env.created_at}
    if env.queue != DEFAULT_QUEUE:
        obj["queue"] = env.queue
    if env.priority != DEFAULT_PRIORITY:
        obj["priority"] = env.priority
    data = _ENCODER.encode(obj).encode("utf-8")
    if len(data) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"task message is {len(data)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    return data


# built once: json.dumps / json.loads with options build a new encoder / decoder on every call
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)
_DECODER = json.JSONDecoder(parse_constant=lambda name: _reject_constant(name))


def decode(raw: bytes | None) -> Envelope:
    """Parse and validate one message; raise ``DecodeError`` saying what is wrong.

    Total: any input yields an ``Envelope`` or ``DecodeError``, never another exception (a check
    that trips over an input nobody foresaw is reported as a malformed message)."""
    try:
        return _decode(raw)
    except DecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - totality: one error type for every bad input
        raise DecodeError(f"malformed message ({type(exc).__name__}: {str(exc)[:120]})") from None


def _decode(raw: bytes | None) -> Envelope:
    if raw is None:
        raise DecodeError("empty message (no value)")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise DecodeError(f"message is {len(raw)} bytes; the limit is {MAX_MESSAGE_BYTES}")
    try:
        obj = _DECODER.decode(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DecodeError(f"message is not UTF-8 JSON: {str(exc)[:120]}") from None
    if not isinstance(obj, dict):
        raise DecodeError("message is not a JSON object")
    version = obj.get("v")
    if type(version) is not int or version != WIRE_VERSION:
        raise DecodeError(f"unsupported wire version {version!r} (this worker reads {WIRE_VERSION})")
    task_id = obj.get("id")
    if not isinstance(task_id, str) or not _ID_RE.fullmatch(task_id):
        raise DecodeError("field 'id' must be 32 lowercase hex characters")
    name = obj.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise DecodeError("field 'name' must be a task name of letters, digits, '_', '.', '-'")
    args = obj.get("args")
    if not isinstance(args, list):
        raise DecodeError("field 'args' must be a JSON array")
    try:
        check_args(args)
    except ValueError as exc:
        raise DecodeError(str(exc)) from None
    created = obj.get("created_at")
    if type(created) is int and abs(created) >= _INT_LIMIT:
        raise DecodeError("field 'created_at' is not a time (too large)")
    if not isinstance(created, int | float) or isinstance(created, bool) \
            or not math.isfinite(created) or created < 0 or created > MAX_TIMESTAMP:
        raise DecodeError("field 'created_at' must be a non-negative number of epoch seconds")
    queue, priority = obj.get("queue", DEFAULT_QUEUE), obj.get("priority", DEFAULT_PRIORITY)
    for field, check, value in (("queue", check_queue, queue), ("priority", check_priority, priority)):
        try:
            check(value)
        except ValueError as exc:
            raise DecodeError(f"field '{field}': {exc}") from None
    extra = set(obj) - {"v", "id", "name", "args", "created_at", "queue", "priority"}
    if extra:
        raise DecodeError(f"unknown fields: {', '.join(sorted(extra))[:120]}")
    return Envelope(task_id, name, tuple(args), float(created), queue, priority)


def check_args(args: Any) -> None:
    """Raise ``ValueError`` unless ``args`` is a short list of small scalars."""
    if len(args) > MAX_ARGS:
        raise ValueError(f"too many arguments: {len(args)} (the limit is {MAX_ARGS})")
    for i, value in enumerate(args, 1):
        check_scalar(value, f"argument {i}")


def check_scalar(value: Any, what: str) -> None:
    if value is None or type(value) is bool:
        return
    if type(value) is int:
        if abs(value) >= _INT_LIMIT:
            raise ValueError(f"{what} has more than {MAX_INT_DIGITS} digits")
        return
    if type(value) is float:
        if not math.isfinite(value):
            raise ValueError(f"{what} is not a finite number")
        return
    if type(value) is str:
        if len(value) > MAX_STRING_CHARS:
            raise ValueError(f"{what} is longer than {MAX_STRING_CHARS} characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{what} is not valid Unicode text (lone surrogate)") from None
        return
    raise ValueError(f"{what} must be a number, a string, true/false or null")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")
