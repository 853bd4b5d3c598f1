"""The ``kafka`` connector: topics read by a consumer group, offsets committed after the store."""

from connectors.kafka.connector import KafkaSourceConnector

__all__ = ["KafkaSourceConnector"]
