"""Fixtures users can reuse in their own tests: a Kafka-protocol broker, an S3 server, a lake."""
