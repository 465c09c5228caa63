// Package digest computes the state digest: an order-independent checksum of
// a set of entries (key, value, version). Gateways keep it incrementally and
// clients recompute it over their local view, so two parties can tell in 16
// bytes whether they hold the same state.
package digest
