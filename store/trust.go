package store

import "time"

// logTrust decides which records read while bootstrapping are young enough
// that the log still held every tombstone after them when they were read,
// so that a resume from a cursor among them can be answered with a diff
// from the index instead of a snapshot.
//
// Kafka's log cleaner keeps a tombstone at least delete.retention.ms after
// it was appended: it sets a batch's delete horizon to the time of its
// first cleaning plus delete.retention.ms (KIP-534), and the cleaning comes
// after the append. Appends are ordered by offset within a partition. So
// once one record of a partition is known to be appended after
// start - delete.retention.ms + guard, every tombstone from that offset on
// is still in the log until start + guard, and a bootstrap that ends by
// start + guard/2 (the other half absorbs clock skew between gateway and
// brokers) has read all of them.
//
// A record's append time is bounded below by its timestamp: exactly, for
// LogAppendTime; for CreateTime, the broker refuses timestamps more than
// message.timestamp.after.max.ms ahead of its clock (one hour by default
// since Kafka 4.0), so the append is at least the timestamp minus that.
type logTrust struct {
	on        bool
	after     int64 // unix ms: appended at or after this keeps its tombstones
	createLag int64 // ms a CreateTime may run ahead of the append; <0 unknown
	deadline  time.Time
}

// minTrustRetention: below this delete.retention.ms the guard would be too
// thin to absorb clock skew; bootstrap records are then never trusted.
const minTrustRetention = 10 * time.Minute

// newLogTrust is the rule for a bootstrap that starts at start, on a topic
// with the given delete.retention.ms and message.timestamp.after.max.ms
// (negative when unknown). off turns it off.
func newLogTrust(start time.Time, retention, createLag time.Duration, off bool) logTrust {
	if off || retention < minTrustRetention {
		return logTrust{}
	}
	guard := min(retention/10, 10*time.Minute)
	lag := int64(-1)
	if createLag >= 0 {
		lag = createLag.Milliseconds()
	}
	return logTrust{
		on:        true,
		after:     start.Add(-retention + guard).UnixMilli(),
		createLag: lag,
		deadline:  start.Add(guard / 2),
	}
}

// appendedAfter reports whether a record with timestamp ts (unix ms) was
// certainly appended after t.after.
func (t logTrust) appendedAfter(ts int64, logAppendTime bool) bool {
	switch {
	case !t.on || ts < 0:
		return false
	case logAppendTime:
		return ts >= t.after
	case t.createLag < 0:
		return false
	default:
		return ts-t.createLag >= t.after
	}
}
