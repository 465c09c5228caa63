// Package failover holds the multi-gateway tests: real confgate processes
// against Apache Kafka, a real load balancer (HAProxy) in front, clients
// that resume across gateways while gateways are killed, stopped and
// restarted, and the history checker (internal/history) verifying every
// client against the topic's log. They build with -tags kafkafaults and need
// CONFGATE_KAFKA_BROKERS and haproxy; scripts/test.sh (make test) runs them.
package failover
