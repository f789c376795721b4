"""The Kafka clients' connection settings: bootstrap servers, security (SASL, TLS) and timeouts.

Plain dictionaries, no Kafka import: ``yadtq.broker`` (the one module that imports kafka-python)
passes them to every producer, consumer and admin client it makes.
"""

from __future__ import annotations

from typing import Any

from yadtq.settings import Settings


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
