"""Settings from ``YADTQ_*`` environment variables, overridable by command-line flags.

Every program (``yadtq``, ``yadtq-worker``, ``yadtq-tui``) shares these; ``add_arguments`` adds the
matching flags to an ``argparse`` parser, and ``Settings.from_env`` / ``Settings.from_args`` build them.
Secrets (passwords in URLs, SASL passwords) are never printed: ``redacted()`` hides them.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from yadtq.keys import (
    DEFAULT_DEAD_LETTER_TOPIC,
    DEFAULT_GROUP,
    DEFAULT_PREFIX,
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    DEFAULT_TOPIC,
    PRIORITIES,
    TOPIC_LEVELS,
    queue_topic,
)

KAFKA_CLIENTS = ("kafka-python", "confluent")
"""The Kafka clients YADTQ sends and consumes with (``Settings.kafka_client``)."""


@dataclass(frozen=True)
class Settings:
    """Connection and behaviour settings shared by the client, the worker and the dashboard."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers, comma-separated."""
    redis_url: str = "redis://127.0.0.1:6379/0"
    """Redis URL: rediss:// for TLS; redis://user@host with the password in a file for ACLs."""
    redis_password_file: str | None = None
    """Read the Redis password from this file (instead of putting it in the URL)."""
    redis_sentinels: str | None = None
    """Redis Sentinel addresses, ``host:port,host:port``: the primary is asked of them (and followed
    through a failover); ``redis_url`` then gives only the scheme, user, password and database."""
    redis_service: str = "yadtq"
    """The primary's name in Sentinel (``sentinel monitor <name> ...``)."""
    topic: str = DEFAULT_TOPIC
    """Kafka topic the tasks go through."""
    dead_letter_topic: str = DEFAULT_DEAD_LETTER_TOPIC
    """Kafka topic that receives messages a worker could not decode or validate."""
    group: str = DEFAULT_GROUP
    """Kafka consumer group shared by all workers."""
    queues: str = DEFAULT_QUEUE
    """The queues a worker consumes, comma-separated (``default,emails``): each is a topic of its
    own (``<topic>.<queue>``; ``default`` is the topic itself), created when missing. A worker never
    receives another queue's tasks."""
    priority_max_batches: int = 8
    """A worker takes a queue's messages highest priority first: a lower level waits while a higher
    one has a backlog, but after this many polls of higher levels in a row it gets a poll of its
    own (see ``priority_max_wait``)."""
    priority_max_wait: float = 5.0
    """Seconds a lower priority level with messages waiting may be held back while a higher one
    has a backlog; then it gets a poll of its own (whichever of this and ``priority_max_batches``
    comes first)."""
    partitions: int = 12
    """Partitions of the tasks topic when YADTQ creates it (more than the workers you expect)."""
    replication_factor: int | None = None
    """Replicas of each topic YADTQ creates; unset: 3 when the cluster has at least 3 live brokers,
    else 1 (the log says which). Existing topics are checked, never changed."""
    min_insync_replicas: int | None = None
    """``min.insync.replicas`` of the topics YADTQ creates (with ``acks=all`` a write needs this many
    replicas); unset: 2 with replication 3, else 1."""
    key_prefix: str = DEFAULT_PREFIX
    """Prefix of every Redis key (``yadtq`` or ``yadtq:<something>``)."""
    heartbeat_interval: float = 1.0
    """Seconds between worker heartbeats; a heartbeat key lives ``3 x`` this long."""
    session_timeout_ms: int = 6000
    """Kafka group session timeout: how long before a silent worker's partitions move."""
    max_poll_interval_ms: int = 300000
    """Kafka's limit between two polls. Workers keep polling while a task runs, so a task may run
    longer than this without losing the worker its partitions."""
    max_poll_records: int = 500
    """Most messages a worker takes from Kafka in one poll."""
    concurrency: int = 8
    """Tasks a worker process runs at once (from any of its partitions, several from one): sync
    tasks on that many threads; 1 runs one task at a time."""
    max_memory_mb: int = 0
    """Replace a worker process once its resident memory passes this many MiB after a task: it
    finishes the tasks it runs, hands back the others, commits, and its supervisor starts a fresh
    one at once (task code that leaks, instead of the OOM killer; 0: no limit)."""
    max_tasks_per_process: int = 0
    """Replace a worker process the same way after this many tasks (0: no limit)."""
    default_max_attempts: int = 3
    """Attempts per task when the task does not say (1 = no retry)."""
    default_time_limit: float = 300.0
    """Seconds a task may run when the task does not say."""
    commit_after: float = 2.0
    """Seconds a finished task's offset waits before the worker commits it to Kafka: with Redis's
    default ``appendfsync everysec`` an outcome this old is on disk, so a Redis crash that loses its
    last second of writes cannot lose a task whose message was already committed (0 with
    ``appendfsync always``)."""
    stuck_grace: float = 10.0
    """Seconds a task may go on after its time limit before the worker escalates: it fails the task,
    commits, and restarts (the supervisor starts a fresh worker process)."""
    repair_interval: float = 30.0
    """Seconds between two rounds of the reconciler (run by one worker at a time)."""
    repair_after: float = 60.0
    """A queued or in-progress task unchanged this long is checked by the reconciler: it is sent
    again when Kafka shows that its partition was consumed past it (nothing is left behind it)."""
    result_ttl: float = 604800.0
    """Seconds a finished task (completed, failed...) is kept after it finished, with its result
    and history; then it is removed with its index entries and counts (0 keeps them forever)."""
    retention_interval: float = 60.0
    """Seconds between two rounds of the retention sweeper (run by one worker at a time)."""
    retry_backoff: float | None = None
    """Seconds before a failed task's first retry, doubling for each next one up to 30 s (unset:
    0.5). The retry waits ``scheduled`` in the due set: the worker goes on with other tasks."""
    scheduler_lock_ttl: float = 2.0
    """Seconds the scheduling leader's lock lives unless renewed (it renews it at every claim):
    after the leader dies, another worker's scheduler takes over within about this long."""
    scheduler_lease: float = 30.0
    """Seconds a claimed due task may wait for Kafka's acknowledgement before it is claimed and
    sent again (a scheduler that died between its claim and its send)."""
    kafka_client: str = "kafka-python"
    """The Kafka client that sends and consumes the tasks: kafka-python, or confluent
    (confluent-kafka on librdkafka, ``pip install yadtq[confluent]``). Topics, offsets and the
    health probe use kafka-python either way."""
    kafka_security_protocol: str = "PLAINTEXT"
    """PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""
    kafka_sasl_mechanism: str | None = None
    """PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 when SASL is used."""
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_sasl_password_file: str | None = None
    kafka_ssl_cafile: str | None = None
    log_args: bool = False
    """Workers log argument values only when this is on (they may be sensitive)."""

    # ------------------------------------------------------------------ building
    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``YADTQ_<FIELD>`` variables, then ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get("YADTQ_" + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _convert(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values).validated()

    @classmethod
    def from_args(cls, ns: argparse.Namespace, environ: Mapping[str, str] | None = None) -> Settings:
        """Settings from the environment with the flags added by ``add_arguments`` on top."""
        overrides = {f.name: getattr(ns, f.name, None) for f in fields(cls)}
        return cls.from_env(environ, **overrides)

    def to_env(self) -> dict[str, str]:
        """The ``YADTQ_*`` variables that ``from_env`` reads back as these settings (for starting
        worker processes). The SASL password is left out: pass it through a file."""
        return {"YADTQ_" + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)
                if getattr(self, f.name) is not None and f.name != "kafka_sasl_password"}

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes).validated()

    def validated(self) -> Settings:
        if self.partitions < 1:
            raise ValueError("partitions must be at least 1")
        for name in ("replication_factor", "min_insync_replicas"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value!r}")
        if (self.replication_factor is not None and self.min_insync_replicas is not None
                and self.min_insync_replicas > self.replication_factor):
            raise ValueError(f"min_insync_replicas ({self.min_insync_replicas}) cannot exceed "
                             f"replication_factor ({self.replication_factor}): no write could succeed")
        for name in ("heartbeat_interval", "default_time_limit", "stuck_grace", "repair_interval",
                     "repair_after", "retention_interval", "scheduler_lock_ttl",
                     "scheduler_lease"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if self.retry_backoff is not None and (not math.isfinite(self.retry_backoff)
                                               or not 0 <= self.retry_backoff <= 86400):
            raise ValueError(f"retry_backoff must be 0 to 86400 seconds, got {self.retry_backoff!r}")
        if not math.isfinite(self.commit_after) or not 0 <= self.commit_after <= 60:
            raise ValueError(f"commit_after must be 0 to 60 seconds, got {self.commit_after!r}")
        if not math.isfinite(self.result_ttl) or self.result_ttl < 0:
            raise ValueError(f"result_ttl must be 0 (keep forever) or more seconds, "
                             f"got {self.result_ttl!r}")
        if self.session_timeout_ms < 1 or self.max_poll_interval_ms < 1:
            raise ValueError("session_timeout_ms and max_poll_interval_ms must be positive")
        if self.default_max_attempts < 1:
            raise ValueError("default_max_attempts must be at least 1")
        if self.max_memory_mb < 0 or self.max_tasks_per_process < 0:
            raise ValueError("max_memory_mb and max_tasks_per_process must be 0 (no limit) or more")
        if not 1 <= self.concurrency <= 1024:
            raise ValueError(f"concurrency must be 1 to 1024, got {self.concurrency!r}")
        if self.kafka_client not in KAFKA_CLIENTS:
            raise ValueError(f"kafka_client must be one of {', '.join(KAFKA_CLIENTS)}, "
                             f"got {self.kafka_client!r}")
        if self.priority_max_batches < 1:
            raise ValueError("priority_max_batches must be at least 1")
        if not math.isfinite(self.priority_max_wait) or self.priority_max_wait <= 0:
            raise ValueError(f"priority_max_wait must be a positive number of seconds, "
                             f"got {self.priority_max_wait!r}")
        if self.max_poll_records < 1:
            raise ValueError("max_poll_records must be at least 1")
        self.queue_list()
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("redis_url must start with redis://, rediss:// or unix://")
        self.sentinel_addresses()
        return self

    def queue_list(self) -> tuple[str, ...]:
        """``queues`` as names, in order, without repeats; ``ValueError`` for a bad one."""
        names = tuple(dict.fromkeys(q.strip() for q in self.queues.split(",") if q.strip()))
        if not names:
            raise ValueError("queues: no queue given (e.g. 'default' or 'default,emails')")
        for name in names:
            try:
                self.queue_topic(name)
            except ValueError as exc:
                raise ValueError(f"queues: {exc}") from None
        return names

    def queue_topic(self, queue: str, priority: str = DEFAULT_PRIORITY) -> str:
        """The Kafka topic of ``queue`` at ``priority`` (``yadtq.keys.queue_topic``); ``ValueError``
        for a bad name or level, or a queue one of whose topics would be the dead-letter topic."""
        for level in PRIORITIES:
            if queue_topic(self.topic, queue, level) == self.dead_letter_topic:
                raise ValueError(f"queue {queue!r} would use the dead-letter topic "
                                 f"{self.dead_letter_topic}")
        return queue_topic(self.topic, queue, priority)

    def worker_topics(self) -> list[str]:
        """The topics a worker of ``queues`` consumes, in its consumer's order (its slots,
        ``yadtq.broker_types.slot``): per queue its ``normal``, ``high`` and ``low`` topics
        (``yadtq.keys.TOPIC_LEVELS``), so the first queue's normal level keeps slots 0..n-1."""
        return [self.queue_topic(q, p) for q in self.queue_list() for p in TOPIC_LEVELS]

    # ------------------------------------------------------------------ secrets
    def redis_password(self) -> str | None:
        return _read_secret(self.redis_password_file)

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """``redis_sentinels`` as ``(host, port)`` pairs; empty when Sentinel is not used."""
        out = []
        for item in (self.redis_sentinels or "").split(","):
            if not item.strip():
                continue
            host, sep, port = item.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"redis_sentinels: {item.strip()!r} is not host:port "
                                 "(a comma-separated list, e.g. 10.0.0.1:26379,10.0.0.2:26379)")
            out.append((host.strip("[]"), int(port)))
        if self.redis_sentinels and self.redis_sentinels.strip() and not out:
            raise ValueError("redis_sentinels: no address given")
        if out and self.redis_url.startswith("unix://"):
            raise ValueError("redis_sentinels needs a redis:// or rediss:// redis_url, not unix://")
        return out

    def sasl_password(self) -> str | None:
        return _read_secret(self.kafka_sasl_password_file) or self.kafka_sasl_password

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with every secret replaced by ``***`` (safe to log or show)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "kafka_sasl_password" and value:
                value = "***"
            elif f.name == "redis_url":
                value = redact_url(value)
            out[f.name] = value
        return out

    @property
    def heartbeat_ttl(self) -> float:
        return self.heartbeat_interval * 3


def redact_url(url: str) -> str:
    """``redis://user:secret@host`` -> ``redis://user:***@host``; ``?password=`` is masked too.

    Split at the *last* ``@`` of the authority, as redis-py does, so a password containing ``@``
    is hidden whole."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        userinfo, _, host = authority.rpartition("@")
        user = userinfo.split(":", 1)[0]
        authority = f"{user}:***@{host}" if ":" in userinfo else f"***@{host}"
    tail = re.sub(r"(?i)((?:^|[?&;])password=)[^&;#]*", r"\1***", tail)
    return f"{scheme}://{authority}{slash}{tail}"


def _read_secret(path: str | None) -> str | None:
    if not path:
        return None
    with open(path, encoding="utf-8") as fh:
        return fh.read().strip() or None


def _convert(name: str, type_name: Any, raw: str) -> Any:
    t = str(type_name)
    try:
        if t.startswith("int"):
            return int(raw)
        if t.startswith("float"):
            return float(raw)
        if t.startswith("bool"):
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
    except ValueError:
        raise ValueError(f"YADTQ_{name.upper()}: cannot read {raw!r} as {t.split(' ')[0]}") from None
    return raw


class _RefuseSecret(argparse.Action):
    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        parser.error("--kafka-sasl-password is not accepted on the command line; set "
                     "YADTQ_KAFKA_SASL_PASSWORD or --kafka-sasl-password-file")


def add_arguments(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    """Add ``--kafka-bootstrap``, ``--redis-url``... flags; each defaults to its ``YADTQ_`` variable."""
    doc = _field_docs()
    group = parser.add_argument_group("connection and settings (flag > YADTQ_* variable > default)")
    for f in fields(Settings):
        if only is not None and f.name not in only:
            continue
        if f.name in ("kafka_sasl_password",):
            # secrets only from the environment or a file, never on a command line (where `ps`
            # and shell history see them); an explicit flag that refuses, so argparse does not
            # prefix-match it to --kafka-sasl-password-file
            group.add_argument("--kafka-sasl-password", action=_RefuseSecret, nargs="?",
                               help=argparse.SUPPRESS)
            continue
        flag = "--" + f.name.replace("_", "-")
        env = "YADTQ_" + f.name.upper()
        kind = str(f.type)
        help_text = f"{doc.get(f.name, '')} [env {env}; default {f.default!r}]".strip()
        if kind.startswith("bool"):
            group.add_argument(flag, dest=f.name, action="store_const", const=True, default=None,
                               help=help_text)
        else:
            conv: Any = int if kind.startswith("int") else float if kind.startswith("float") else str
            group.add_argument(flag, dest=f.name, type=conv, default=None, metavar=f.name.upper(),
                               help=help_text.replace("%", "%%"))


def _field_docs() -> dict[str, str]:
    """Attribute docstrings of ``Settings`` (the string right after each field)."""
    import ast
    import inspect

    try:
        tree = ast.parse(inspect.getsource(Settings))
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for prev, node in zip(body, body[1:], strict=False):
        if (isinstance(prev, ast.AnnAssign) and isinstance(prev.target, ast.Name)
                and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)):
            docs[prev.target.id] = " ".join(node.value.value.split())
    return docs
