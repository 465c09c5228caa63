// Command confgate is the confgate binary: `serve` runs a gateway against
// Kafka, `dev` runs a self-contained gateway with an embedded broker, and the
// other verbs (get, put, delete, snapshot, watch) talk to a gateway over
// gRPC.
package main
