"""Stages over Kafka: worker roles that pass records through stage topics (ADR-0018)."""
