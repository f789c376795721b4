"""The confluent-kafka adapter's pieces that need no broker: the setting that chooses it, the
connection settings in librdkafka's names, and the error translation to the core's errors."""

from __future__ import annotations

import sys

import pytest

from yadtq import broker_types
from yadtq.errors import BrokerError, ServiceUnavailable
from yadtq.settings import Settings


def test_kafka_client_setting() -> None:
    assert Settings().kafka_client == "kafka-python"
    assert Settings.from_env({"YADTQ_KAFKA_CLIENT": "confluent"}).kafka_client == "confluent"
    with pytest.raises(ValueError, match="kafka_client must be one of kafka-python, confluent"):
        Settings.from_env({"YADTQ_KAFKA_CLIENT": "librdkafka"})


def test_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "confluent_kafka", None)  # import fails as if not installed
    monkeypatch.delitem(sys.modules, "yadtq.broker_confluent", raising=False)
    with pytest.raises(BrokerError, match=r"pip install 'yadtq\[confluent\]'"):
        broker_types.confluent_module()


ck = pytest.importorskip("confluent_kafka")  # the rest needs the package (the dev extra has it)

from yadtq import broker_confluent  # noqa: E402


def test_connection_settings_in_librdkafka_names(tmp_path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("s3cret\n")
    cfg = broker_confluent.confluent_config(Settings(
        kafka_bootstrap="a:9092,b:9092", kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="u",
        kafka_sasl_password_file=str(secret), kafka_ssl_cafile="/ca.pem"), "w-1")
    assert cfg["bootstrap.servers"] == "a:9092,b:9092" and cfg["client.id"] == "w-1"
    assert (cfg["security.protocol"], cfg["sasl.mechanism"], cfg["sasl.username"],
            cfg["sasl.password"], cfg["ssl.ca.location"]) == (
        "SASL_SSL", "SCRAM-SHA-512", "u", "s3cret", "/ca.pem")
    plain = broker_confluent.confluent_config(Settings())
    assert "sasl.mechanism" not in plain and "ssl.ca.location" not in plain
    cfg.pop("logger")  # the rest is what librdkafka accepts
    ck.Producer({**cfg, "sasl.mechanism": "PLAIN", "security.protocol": "SASL_PLAINTEXT"})


@pytest.mark.parametrize("code", [ck.KafkaError._TRANSPORT, ck.KafkaError._ALL_BROKERS_DOWN,
                                  ck.KafkaError._MSG_TIMED_OUT, ck.KafkaError._TIMED_OUT,
                                  ck.KafkaError.NOT_LEADER_FOR_PARTITION])
def test_transient_errors_are_service_unavailable(code: int) -> None:
    err = broker_confluent.translate(ck.KafkaException(ck.KafkaError(code)), "k:9092", "the task")
    assert isinstance(err, ServiceUnavailable) and "k:9092" in str(err)
    assert isinstance(broker_confluent.translate(ck.KafkaError(code), "k:9092", "x"),
                      ServiceUnavailable)


def test_librdkafkas_retriable_flag_is_transient() -> None:
    err = ck.KafkaError(ck.KafkaError.UNKNOWN_TOPIC_OR_PART, retriable=True)
    assert isinstance(broker_confluent.translate(err, "k", "x"), ServiceUnavailable)


def test_permanent_errors_are_broker_errors() -> None:
    for code in (ck.KafkaError.TOPIC_AUTHORIZATION_FAILED, ck.KafkaError.MSG_SIZE_TOO_LARGE):
        err = broker_confluent.translate(ck.KafkaException(ck.KafkaError(code)), "k", "the task")
        assert type(err) is BrokerError, err
    assert isinstance(broker_confluent.translate(BufferError("Local: Queue full"), "k", "x"),
                      ServiceUnavailable)
    assert type(broker_confluent.translate(TypeError("bad"), "k", "x")) is BrokerError


def test_no_broker_means_service_unavailable_on_send() -> None:
    """A producer pointed at a closed port: the send fails per task as ServiceUnavailable."""
    from yadtq.wire import Envelope

    settings = Settings(kafka_bootstrap="127.0.0.1:9")
    producer = broker_confluent.ConfluentProducer(settings)
    try:
        env = Envelope("0" * 32, "ADD", (1, 2), 1.0)
        errors = producer.send([env], timeout=0.5)
        assert len(errors) == 1 and isinstance(errors[0], ServiceUnavailable), errors
    finally:
        producer.close()
