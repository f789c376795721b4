"""The Kafka adapter's connection layer: client settings, error translation and the health probe.

With ``yadtq.broker`` (producer, consumer, offsets) and ``yadtq.topics`` (topic administration)
this is one of the three modules that import kafka-python. ``kafka_errors`` is the one place where
kafka-python's exceptions become the core's: a retriable or connection error is
``ServiceUnavailable`` (wait it out), anything else ``BrokerError``. No kafka-python exception
leaves the adapter.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kafka.admin import KafkaAdminClient
from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, NodeNotReadyError

from yadtq.errors import BrokerError, ServiceUnavailable, YadtqError
from yadtq.settings import Settings

KAFKA_FAILURES: tuple[type[Exception], ...] = (KafkaError, OSError, ValueError, AssertionError,
                                              RuntimeError)
"""What kafka-python raises when a request fails: its own errors, socket errors, and the
ValueError / AssertionError / RuntimeError its internals use for bad state (an unknown topic in
the metadata, a closed client)."""

_UNREACHABLE = (KafkaConnectionError, KafkaTimeoutError, NodeNotReadyError, OSError, TimeoutError)


def translate(exc: BaseException, bootstrap: str, what: str) -> YadtqError:
    """The core's error for an exception of the Kafka client: transient or permanent."""
    if isinstance(exc, YadtqError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, _UNREACHABLE) or getattr(exc, "retriable", False):
        return ServiceUnavailable(f"Kafka unreachable at {bootstrap} ({what}): {text}")
    return BrokerError(f"Kafka refused {what}: {text}")


@contextmanager
def kafka_errors(bootstrap: str, what: str) -> Iterator[None]:
    """Run the block; a kafka-python failure leaves it as ``ServiceUnavailable`` / ``BrokerError``."""
    try:
        yield
    except YadtqError:
        raise
    except KAFKA_FAILURES as exc:  # the translation point: every failure of the client
        raise translate(exc, bootstrap, what) from None


def _security(settings: Settings) -> dict[str, Any]:
    cfg: dict[str, Any] = {"security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol.startswith("SASL"):
        cfg["sasl_mechanism"] = settings.kafka_sasl_mechanism or "PLAIN"
        cfg["sasl_plain_username"] = settings.kafka_sasl_username
        cfg["sasl_plain_password"] = settings.sasl_password()
    if settings.kafka_ssl_cafile:
        cfg["ssl_cafile"] = settings.kafka_ssl_cafile
    return cfg


def client_config(settings: Settings) -> dict[str, Any]:
    """Connection settings common to the producer, the consumer and the admin client."""
    return {"bootstrap_servers": settings.kafka_bootstrap.split(","), **_security(settings),
            "client_id": "yadtq", "bootstrap_timeout_ms": 5000,
            "reconnect_backoff_max_ms": 1000}


_probes: dict[tuple[str, str], Any] = {}
_probe_lock = threading.Lock()


def kafka_ping(settings: Settings, timeout: float = 3.0) -> None:
    """Raise ``ServiceUnavailable`` unless the broker answers a metadata request.

    The admin connection is kept between calls (a health check every few seconds costs one
    request on an open connection, not a new client); it is dropped after a failure."""
    key = (settings.kafka_bootstrap, settings.kafka_security_protocol)
    with _probe_lock:
        admin = _probes.get(key)
        try:
            if admin is None:
                cfg = {**client_config(settings), "bootstrap_timeout_ms": int(timeout * 1000)}
                admin = KafkaAdminClient(**cfg, request_timeout_ms=int(timeout * 1000))
                _probes[key] = admin
            admin.list_topics()
        except KAFKA_FAILURES as exc:  # any failure means "not reachable now"
            _probes.pop(key, None)
            if admin is not None:
                try:
                    admin.close()
                except KAFKA_FAILURES:
                    pass  # closing a probe that failed
            raise ServiceUnavailable(f"Kafka unreachable at {settings.kafka_bootstrap}: {exc}") from None
