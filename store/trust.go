package store

import (
	"context"
	"time"

	"github.com/confgate/confgate/internal/cursor"
)

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
//
// The trusted offsets take effect only once the bootstrap is over and the
// log start offsets, listed again, are at or below them: retention or
// DeleteRecords may have moved the start past records while they were being
// read, and franz-go skips to the new start without reporting a loss.
// Tombstones the store itself forgot while bootstrapping (TombstoneRetention)
// raise them too.
type logTrust struct {
	on        bool
	after     int64 // unix ms: appended at or after this keeps its tombstones
	createLag int64 // ms a CreateTime may run ahead of the append; <0 unknown
	// logAppendTopic: the topic stamps LogAppendTime, so a record that
	// says CreateTime came from a legacy batch whose timestamp no broker
	// checked.
	logAppendTopic bool
	deadline       time.Time
}

// topicTiming is what logTrust needs from the topic's configs, as the
// brokers report them now. The rule assumes they held when the records were
// appended (see docs/kafka.md before changing them).
type topicTiming struct {
	tombRetention time.Duration // delete.retention.ms; 0 unknown
	createLag     time.Duration // message.timestamp.after.max.ms; <0 unknown
	logAppendTime bool          // message.timestamp.type=LogAppendTime
	// uncleanElection: unclean.leader.election.enable. A log truncated
	// below what readers saw, then written again, makes old cursors look
	// valid; a snapshot is the only safe answer to them.
	uncleanElection bool
	// cleanupPolicy is the topic's cleanup.policy ("" unknown).
	cleanupPolicy string
	// maxMessageBytes is the topic's max.message.bytes (0 unknown).
	maxMessageBytes int64
}

// minTrustRetention: below this delete.retention.ms the guard would be too
// thin to absorb clock skew; bootstrap records are then never trusted.
const minTrustRetention = 10 * time.Minute

// newLogTrust is the rule for a bootstrap that starts at start on a topic
// with timing tt. off turns it off.
func newLogTrust(start time.Time, tt topicTiming, off bool) logTrust {
	if off || tt.uncleanElection || tt.tombRetention < minTrustRetention {
		return logTrust{}
	}
	guard := min(tt.tombRetention/10, 10*time.Minute)
	lag := int64(-1)
	if tt.createLag >= 0 {
		lag = tt.createLag.Milliseconds()
	}
	return logTrust{
		on:             true,
		after:          start.Add(-tt.tombRetention + guard).UnixMilli(),
		createLag:      lag,
		logAppendTopic: tt.logAppendTime,
		deadline:       start.Add(guard / 2),
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
	case t.createLag < 0, t.logAppendTopic:
		return false
	default:
		return ts-t.createLag >= t.after
	}
}

// trustBootstrap runs when the store has caught up and its state waits to
// trust what it read (logTrust): it lists the log start offsets, and the
// store becomes ready with them. Readiness waits for this one request so
// that the first resumes after a restart already get diffs. On failure
// nothing is trusted: resumes from before the start get snapshots.
func (s *Store) trustBootstrap(ctx context.Context, meta topicMeta) {
	s.mu.RLock()
	st := s.st
	pending := st.trustPending(s.targets)
	s.mu.RUnlock()
	if !pending {
		return
	}
	start, err := s.listOffsets(ctx, meta, s.adm.ListStartOffsets)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st != st {
		return
	}
	if err != nil {
		s.log.Warn("not trusting the log's tombstones: start offsets unknown", "err", err)
		st.trust = logTrust{}
	} else {
		st.trustStart = start
	}
	s.checkReadyLocked()
	s.notifyLocked()
	if s.ready {
		s.log.Info("resumes from cursors at or after this are answered with diffs", "cursor", cursor.Cursor{Topic: st.topic, Offsets: st.diffFloor}.String())
	}
}
