"""One corpus of bad input, tried on every surface that takes it: the API, the CLI (the dashboard's
form runs the same corpus in tests/tui). Each must be refused with one clear line, and neither Redis
nor Kafka may change."""

from __future__ import annotations

import io
from typing import Any

import fakeredis
import pytest

from yadtq import Client
from yadtq.cli import main as cli_main
from yadtq.errors import InvalidTask
from yadtq.testing import FakeBroker

# (typed text, a word the message must contain)
TEXT_CORPUS: list[tuple[str, str]] = [
    ("", "empty"), ("   ", "empty"), ("\t\n", "empty"),
    ("ADD", "takes 2 arguments"), ("ADD 1", "takes 2 arguments"), ("ADD 1 2 3", "takes 2 arguments"),
    ("POW 2 3", "unknown task"), ("os.system ls", "unknown task"), ("eval 1 2", "unknown task"),
    ("__import__('os') 1 2", "unknown task"), ("ADD; rm -rf / 1 2", "unknown task"),
    ("ADD x 2", "not a number"), ("ADD 2 y", "not a number"), ("ADD 0x10 1", "not a number"),
    ("ADD 1_000 2", "not a number"), ("ADD 1,5 2", "not a number"), ("ADD 2/3 1", "not a number"),
    ("ADD ٣ 4", "ASCII digits"), ("ADD １ 2", "ASCII digits"), ("ADD ² 2", "ASCII digits"),
    ("ADD nan 1", "NaN"), ("ADD NaN 1", "NaN"), ("ADD inf 1", "NaN and infinity"),
    ("ADD -Infinity 1", "NaN and infinity"), ("ADD 1e999 1", "too large"),
    ("MUL " + "9" * 101 + " 2", "too large"), ("MUL 2 -" + "1" * 150, "too large"),
    ("MUL " + "1" * 20000 + " 2", "longer than"), ("ADD 'unterminated 1", "cannot split"),
    ("ADD [red]1[/red] 2", "not a number"), ("ADD \x1b[2J 2", "not a number"),
    ("ADD 1\x00 2", "not a number"), ("SLEEP", "takes 1 argument"), ("DIV 1", "takes 2 arguments"),
]

# (name, args, a word the message must contain)
API_CORPUS: list[tuple[str, list[Any], str]] = [
    ("ADD", [1], "takes 2 arguments"), ("ADD", [1, 2, 3], "takes 2 arguments"),
    ("NOPE", [], "unknown task"), ("os.system", ["ls"], "unknown task"), ("", [], "unknown task"),
    ("ADD", ["x", 1], "must be a number"), ("ADD", [None, 1], "must be a number"),
    ("ADD", [True, 1], "must be a number"), ("ADD", [float("nan"), 1], "not a finite number"),
    ("ADD", [float("inf"), 1], "not a finite number"), ("ADD", [10**101, 1], "digits"),
    ("ADD", [[1], 2], "must be a number, a string"), ("ADD", [{"a": 1}, 2], "must be a number, a string"),
    ("ADD", [b"1", 2], "must be a number, a string"), ("ECHO_NOT_HERE", ["x"], "unknown task"),
    ("ADD", list(range(40)), "too many arguments"),
]


def snapshot(redis: fakeredis.FakeRedis, broker: FakeBroker) -> tuple[Any, ...]:
    keys = {k: redis.dump(k) for k in redis.keys("*")}
    topics = {t: [list(p) for p in parts] for t, parts in broker.topics.items()}
    return keys, topics


@pytest.fixture
def populated(fake_client: Client) -> Client:
    """A queue that already holds work: bad input must not touch it."""
    fake_client.submit("ADD", [1, 2])
    fake_client.submit_many([("MUL", [3, 4]), ("DIV", [1, 0])])
    return fake_client


@pytest.mark.parametrize(("text", "why"), TEXT_CORPUS, ids=range(len(TEXT_CORPUS)))
def test_api_text_refused(populated: Client, fake_redis: fakeredis.FakeRedis,
                          fake_broker: FakeBroker, text: str, why: str) -> None:
    before = snapshot(fake_redis, fake_broker)
    with pytest.raises(InvalidTask) as err:
        populated.submit_text(text)
    message = str(err.value)
    assert why in message and "\n" not in message and len(message) < 300, message
    assert snapshot(fake_redis, fake_broker) == before


@pytest.mark.parametrize(("name", "args", "why"), API_CORPUS, ids=range(len(API_CORPUS)))
def test_api_values_refused(populated: Client, fake_redis: fakeredis.FakeRedis,
                            fake_broker: FakeBroker, name: str, args: list[Any], why: str) -> None:
    before = snapshot(fake_redis, fake_broker)
    with pytest.raises(InvalidTask) as err:
        populated.submit(name, args)
    assert why in str(err.value), str(err.value)
    with pytest.raises(InvalidTask):  # one bad task in a batch refuses the whole batch
        populated.submit_many([("ADD", [1, 1]), (name, args)])
    assert snapshot(fake_redis, fake_broker) == before


@pytest.mark.parametrize(("text", "why"), TEXT_CORPUS, ids=range(len(TEXT_CORPUS)))
def test_cli_refused(populated: Client, fake_redis: fakeredis.FakeRedis, fake_broker: FakeBroker,
                     text: str, why: str) -> None:
    before = snapshot(fake_redis, fake_broker)
    words = text.split(" ") if text.strip() else [text]
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(["submit", *words], client=populated, stdout=out, stderr=err)
    assert code == 2, (code, err.getvalue())
    assert out.getvalue() == ""
    lines = err.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].startswith("yadtq: ") and "\x1b" not in lines[0], lines
    assert snapshot(fake_redis, fake_broker) == before
