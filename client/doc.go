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
// With Config.StateFile, it also owns a last-known-good file: the view and
// its cursor, rewritten atomically by a second goroutine (at once after the
// first snapshot, then at most every StateFileInterval, and on Close). A
// restarted service boots from it while every gateway is down:
//
//	v, err := client.Subscribe(ctx, client.Config{
//		Addrs:     []string{"gw1:7070", "gw2:7070"},
//		Prefixes:  []string{"payments/"},
//		StateFile: "/var/lib/myservice/confgate.state",
//	})
//	if err != nil { ... }
//	if err := v.WaitLoaded(ctx); err != nil { ... } // at once from the file
//	// Status().FromFile and Stale stay true until a gateway answers.
//
// The first stream then resumes from the file's cursor, so a gateway that
// still holds the history after it answers with deltas, not a snapshot.
// A file that fails any check (checksum, format version, selector, entry
// count, digest) is ignored as a whole with a warning.
//
// A view also tells the gateways what it holds, for the fleet view
// (confgate fleet, GetFleet): every Subscribe carries Config.ClientID
// (generated when not set), Service and Labels, and the view reports its
// cursor and digest through the gateway of its stream at once after a
// snapshot or delta (at most every ReportInterval/5) and every
// ReportInterval otherwise. A gateway too old to take reports answers
// UNIMPLEMENTED; the view then stops reporting to it and carries on. The
// application says which values it refuses, like an xDS NACK, and the
// fleet view shows them:
//
//	v.Reject("payments/limits", "schema: max_rps must be positive")
//	// ... reported until the key changes, or until
//	v.Accept("payments/limits")
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
//   - Load a partial or foreign state file, or leave a partial one behind:
//     a file is adopted only when all of it checks out, and it is replaced
//     by rename, never rewritten in place.
//   - Wait for the disk while applying gateway messages: the state file
//     writer reads published, immutable versions of the view.
//
// Proto types stay inside this package: the API speaks Entry, Event and
// cursor strings.
package client
