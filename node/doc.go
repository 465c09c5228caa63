// Package node runs one confgate gateway: a store consuming the config
// topic and a gateway serving it over gRPC, wired together in the order
// production needs. It is what `confgate serve` and `confgate dev` run, and
// what tests and embedders start instead of wiring the two themselves.
//
// It owns the lifecycle only: start (listen, consume, serve), readiness,
// and shutdown, where the gateway drains its streams first while the store
// keeps its state current, and the store stops last. Configuration belongs
// to store.Config and gateway.Config.
package node
