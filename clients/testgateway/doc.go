// Command testgateway runs a complete confgate gateway for the polyglot
// client tests (scripts/polyglot-test.sh): franz-go's in-process Kafka
// broker (kfake, dev and tests only), a store and a gateway, plus a TCP
// proxy in front of the gateway that the tests can cut and restore to
// simulate a lost connection. Everything listens on 127.0.0.1.
//
// It builds from the library packages (store, gateway) rather than the
// confgate CLI, so the client tests do not depend on CLI flags or output.
//
//	testgateway -addr-file /tmp/addrs.json
//
// Once the store is caught up it writes one JSON object to -addr-file (and
// stdout):
//
//	{"grpc":"127.0.0.1:p1","admin":"127.0.0.1:p2","proxy":"127.0.0.1:p3","control":"http://127.0.0.1:p4"}
//
// grpc is the gateway; proxy forwards to it. The control endpoint takes
// POST /proxy/down (close every proxied connection and refuse new ones by
// closing them at once) and POST /proxy/up. The process exits on SIGINT,
// SIGTERM, or after -max-lifetime.
package main
