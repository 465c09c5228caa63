// Package history records what each subscriber observed and checks it
// against the topic's actual log: the guarantees of docs/guarantees.md,
// verified per client, with the first violation reported precisely
// (client, observation index, cursor, key, expected, got).
//
// # Recording
//
// A Recorder holds one ClientLog per client (one logical view, over any
// number of streams and gateways). Feed it from the goroutine that reads
// the stream:
//
//	rec := history.NewRecorder()
//	cl := rec.Client("payments", []string{"payments/"})
//	cl.Reconnect(cursor.Cursor{}, addr)      // a stream without a cursor
//	for { m, err := st.Recv(); ...; cl.ObserveProto(m) }
//	cl.Reconnect(cl.Cursor(), otherAddr)     // resumed elsewhere
//	...
//	err := rec.Check(k.ReadLog(t, topic), topicID)
//
// ObserveProto buffers snapshot chunks until their SnapshotEnd and turns
// SnapshotEnd, Delta and Progress into one Obs each; Observe takes an Obs
// directly; ObserveStream fits a client library's per-message hook (a new
// stream number is a Reconnect). A client with no Reconnect before its
// first observation is on a stream opened without a cursor.
//
// # The model
//
// The log is ReadLog's data records (read_committed, so aborted
// transactions are absent; markers are not records but move cursors).
// Records a gateway skips are left out exactly as the store does: an empty
// or invalid key, or a key in another partition than Kafka's default
// partitioner gives it for the topic's partition count (taken from the
// clients' cursors). The state at cursor C is, per key, the latest
// remaining record below C[p] in its partition; a tombstone means absent.
// A record "changes state" when it is a put, or a tombstone of a key live
// just before it.
//
// # The rules
//
// Numbered as docs/guarantees.md cites them (Rule's values). Rules 1 to
// 5 and 7 are checked per observation, rule 7 right after rule 1 (the
// cursor before the entries; the exact order is rules.go's tables), rule
// 6 at the end of each client's history, and rule 8, about the log
// itself, once before any client.
//
//  1. Never backwards: the cursor covers the previous one (or the resume
//     cursor). Only a reset snapshot may name another topic.
//  2. Snapshot exact: a snapshot at C holds exactly the selected live
//     entries at C, values and versions, each key once. A digest the
//     gateway sent with it must match its entries.
//  3. No gaps, no duplicates, in order, atomic: a delta from A (the
//     previous cursor, or the resume cursor) to B carries exactly the
//     selected state-changing records with A[p] <= offset < B[p], in log
//     order within each partition (any interleaving across partitions). A
//     delete of a key that was not live changes nothing and must not be
//     sent. A coalesced delta carries, per key whose state at B differs
//     from its state at A, exactly one change: the key's latest record
//     below B (a put), or a delete naming a tombstone of the key in [A, B)
//     no older than its last state change.
//  4. Progress skips nothing: no selected state change in [A, B).
//  5. Resumable: a stream opened without a cursor starts with an initial
//     (non-reset) snapshot; a stream opened with cursor C was resumed from
//     the last cursor the client observed, and either continues from C (a
//     delta, coalesced or not, or progress, whose range starts at C) or
//     sends a snapshot flagged reset; any later snapshot on a stream is
//     flagged reset. Never a silent jump.
//  6. Convergent: the client's view, replayed from its observations,
//     equals the log's state for its selector at its final cursor (the
//     log's final state when that cursor covers the log's end), and so
//     does the view the client itself reports through Final.
//  7. Change sets atomic: every cursor a client observes (a snapshot's,
//     a delta's, a progress message's) covers all or none of each change
//     set's records (covers: C[p] > the record's offset in its partition
//     p). A change set is the records carrying the confgate-set header
//     with one request ID and count; one with fewer records in the log
//     than its count (compacted, or forged) is judged on those present.
//     Violations name the set (Violation.Set) and list the records the
//     cursor covers and those it does not.
//  8. Preconditions held: every record carrying confgate-if had its
//     precondition hold at its position in the log. For a version
//     "P:O", the key's latest earlier record in its partition is the
//     record at P:O, and live; for "absent", the key has no earlier
//     record or its latest is a tombstone. A violation means two
//     conditional writes both won (or a foreign producer forged the
//     header); it names no client (Client "", Index -1) but the record
//     (Violation.Record), and comes before every client's violation.
//
// A client's first observation may come from a stream resumed with a
// cursor and no earlier observation (a service restarted from a saved
// view): its view is then taken to be the log's state at that cursor.
//
// # Decisions
//
// A coalesced delta may include or omit a delete of a key that is absent
// both at A and at B (put then deleted inside the window, or only
// deleted again). Applying it changes nothing a reader sees, and both of
// the gateway's coalescing paths may send it: catching up a slow reader
// keeps the latest state change per key (the delete), and a resume
// answered from the index sends every tombstone still held at or after A.
// Requiring its omission would force the gateway to know each key's state
// at A, which it does not keep; requiring its presence would forbid the
// exact answer. What the checker does require: such a delete names a real
// tombstone of that key inside [A, B), never an invented version, so it
// cannot mask a missing change.
//
// A non-coalesced delta is held to the exact set: a delete of an absent
// key in it is a violation, because the store does not record it as a
// change and a reader could not tell it from a bug.
//
// Change sets and preconditions are read from the records' headers as
// the gateways read them: the last of a repeated header counts, a
// malformed one is absent, and a record a gateway skips (no key, invalid
// key, misrouted) is in no set and is not judged. A request ID whose
// records hold an operation index twice landed more than once (reused
// once its record and the gateways' window of recent IDs were gone) or
// was forged: which records belong together cannot be told, and that set
// is not judged. A cursor a client resumed with but never observed (a
// service restored from a saved view) is not held to rule 7; its next
// observation is.
//
// Rule 8 is sound under compaction, which only removes a record once a
// later record of its key supersedes it (a tombstone goes only after
// the records it superseded): a precondition naming a version whose
// record is no longer in the log is not judged, and a key with no earlier
// record left in the log was absent as far as it can tell. So a log read
// after compaction may hide a violation, never invent one.
//
// Observations whose cursor names another topic than the log's are
// checked for rules 1 and 5 only (their log is gone); a client must end
// on the log's topic.
//
// # Limits
//
// The log must be complete for the ranges the clients observed: a log
// compacted below their cursors has lost records and tombstones a gateway
// saw, and the checker would report differences that are not violations.
// Read the log after the last observation (a change past the log's end is
// reported with that hint). Of the records' headers only confgate-set and
// confgate-if are checked (rules 7 and 8); content types and other
// headers are not, values, versions and keys are. A change set a foreign
// producer forged incomplete (fewer records than its count, none ever
// to come) is given up by the gateways after a while and its records
// flow as plain ones, which a cursor may legitimately cut: rule 7 cannot
// tell it from a compacted set and reports it. A change of
// partition count within one topic is not modelled. A client with no
// observations passes: assert separately that every client reached the
// log's end (ClientLog.Cursor, LogEnd).
package history
