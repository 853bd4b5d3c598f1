from tests.fakes.kafka_broker import kafka_broker  # noqa: F401 - the session broker fixture
