// Package testkit starts the pieces of confgate in-process for tests: a
// Kafka (the kfake dev broker, or a real Apache Kafka when
// CONFGATE_KAFKA_BROKERS is set), stores and gateways on 127.0.0.1:0, and
// gRPC clients, all stopped by t.Cleanup.
package testkit
