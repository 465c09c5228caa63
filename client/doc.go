// Package client is the Go client library of confgate: a resumable
// subscription to a selector that keeps a local, always-readable view of the
// selected configuration entries.
//
//	v, err := client.Subscribe(ctx, client.Config{
//		Addrs:    []string{"gw1:7070", "gw2:7070"},
//		Prefixes: []string{"payments/"},
//	})
//	if err != nil { ... }
//	defer v.Close()
//	if err := v.WaitSynced(ctx); err != nil { ... }
//	e, ok := v.Get("payments/db/timeout")
//
// What it owns: one background goroutine per View that holds a Subscribe
// stream to one gateway at a time, builds the view from snapshots, applies
// deltas, follows progress, and on any failure backs off and resumes on the
// next gateway address with the last applied cursor.
//
// What it must never do:
//   - Go backwards. A change whose version is not newer than what the view
//     holds for its key is ignored, and a gateway that sends a cursor behind
//     the view's (same topic, not a flagged reset) is dropped, never applied.
//   - Show a half-applied state. A snapshot replaces the view only when its
//     SnapshotEnd arrived and its entry count and digest check out; a delta
//     is applied whole. Readers see one immutable version of the view at a
//     time and never wait for the network.
//   - Drop the last-known-good state. While no gateway answers, the view
//     keeps serving what it had, and Status reports it as stale.
//
// Proto types stay inside this package: the API speaks Entry, Event and
// cursor strings.
package client
