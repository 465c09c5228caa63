// Package bench holds confgate's benchmarks: propagation latency (a put
// until a subscriber has it), bootstrap throughput against raw Kafka
// consumption, snapshot encoding and fan-out. They run against the dev
// broker by default and against Apache Kafka with CONFGATE_KAFKA_BROKERS;
// figures that matter are the real-Kafka ones (see docs/kafka.md).
//
//	CONFGATE_KAFKA_BROKERS=127.0.0.1:19092 go test ./bench -run x -bench . -benchtime 2000x
//
// Speed and memory targets are checked here, never by timed assertions in
// tests.
package bench
