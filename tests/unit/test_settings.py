"""The three processes' settings: one base, read the same way from the same environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.settings import ApiSettings
from streamer.delivery.settings import DeliverySettings
from streamer.kafka.settings import KafkaSettings
from streamer.worker.settings import WorkerSettings

PROCESSES = [WorkerSettings, ApiSettings, DeliverySettings]


@pytest.mark.parametrize("settings", PROCESSES)
def test_every_process_reads_kafka_alerts_and_logging_from_the_same_variables(
    settings: type[KafkaSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHURNWATCH_KAFKA_BOOTSTRAP", "kafka-0:9092,kafka-1:9092")
    monkeypatch.setenv("CHURNWATCH_ALERTS_TOPIC", "cw-alerts")
    monkeypatch.setenv("CHURNWATCH_LOG_LEVEL", "DEBUG")
    loaded = settings()
    assert issubclass(settings, KafkaSettings)
    assert (loaded.kafka_bootstrap, loaded.alerts_topic, loaded.log_level) == (
        "kafka-0:9092,kafka-1:9092",
        "cw-alerts",
        "DEBUG",
    )


@pytest.mark.parametrize("settings", PROCESSES)
def test_settings_are_frozen_and_every_field_is_described(settings: type[KafkaSettings]) -> None:
    loaded = settings()
    with pytest.raises(ValueError, match="frozen"):
        loaded.kafka_bootstrap = "elsewhere:9092"  # type: ignore[misc]
    undescribed = [name for name, field in settings.model_fields.items() if not field.description]
    assert undescribed == []


@pytest.mark.parametrize("settings", PROCESSES)
def test_every_setting_is_documented_in_the_readme(settings: type[KafkaSettings]) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert [n for n in settings.model_fields if f"`CHURNWATCH_{n.upper()}`" not in readme] == []
