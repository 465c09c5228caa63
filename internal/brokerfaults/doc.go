// Package brokerfaults holds the broker fault tests: real Apache Kafka
// clusters (one node and three, started by scripts/kafka.sh) whose brokers
// are stopped with SIGTERM or SIGKILL while gateways serve subscribers and a
// writer keeps writing. The tests build with -tags kafkafaults and need java
// and mvn; scripts/test.sh (make test) runs them.
package brokerfaults
