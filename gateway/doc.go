// Package gateway serves confgate.v1.ConfigService over gRPC from a store.
//
// It owns subscriptions (snapshot, then deltas, then progress), snapshots,
// point reads and writes, the encoded-payload cache, health and the admin
// HTTP endpoints. It reads the store only through the Source interface and
// never talks to Kafka directly.
//
// Fan-out is pull-based: the store keeps a bounded history of applied
// batches; each subscription's handler goroutine (the only writer to its
// stream) reads the batches at its own pace. Subscribers with the same
// selector share one group, and a group encodes each delta once; the
// payloads go out as pre-encoded frames through a codec that passes them
// through. A subscriber that falls far behind gets its pending changes
// coalesced per key (latest wins), and past a bound a fresh snapshot, so a
// slow reader costs only itself.
//
// Access (auth.go): every RPC but health is authenticated, reads and
// writes are checked against the ACL (package auth decides, the gateway
// enforces), open streams are re-checked when the ACL changes and end at
// their credential's expiry, and every write carries its writer and
// gateway in reserved record headers.
package gateway
