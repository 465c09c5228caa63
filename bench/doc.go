// Package bench holds confgate's benchmarks: propagation latency (a put
// until a subscriber has it), bootstrap throughput against raw Kafka
// consumption, snapshot encoding and fan-out. They run against the dev
// broker by default and against Apache Kafka with CONFGATE_KAFKA_BROKERS;
// figures that matter are the real-Kafka ones (see docs/kafka.md).
//
//	out=$(scripts/kafka.sh up) && eval "export $out"   # free ports, printed
//	go test ./bench -run x -bench . -benchtime 2000x
//	scripts/kafka.sh down
//
// Speed and memory targets are checked here, never by timed assertions in
// tests.
package bench
