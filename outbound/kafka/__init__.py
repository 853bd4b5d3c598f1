"""Kafka channel: produce deliveries to a topic with an idempotent confluent-kafka producer."""

from outbound.kafka.channel import KafkaChannel
from outbound.kafka.config import KafkaConfig

__all__ = ["KafkaChannel", "KafkaConfig"]
