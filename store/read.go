package store

import (
	"context"
	"fmt"
	"maps"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/twmb/franz-go/pkg/kadm"
)

// Ready reports whether the store has caught up and may serve.
func (s *Store) Ready() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ready
}

// Changed returns a channel closed at the next change: a batch applied,
// readiness gained or lost, or a rebuild.
func (s *Store) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// WaitReady blocks until the store is ready or ctx ends.
func (s *Store) WaitReady(ctx context.Context) error {
	for {
		s.mu.RLock()
		ready, ch := s.ready, s.changed
		s.mu.RUnlock()
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
		case <-ch:
		}
	}
}

// Status is a point-in-time summary for health checks and progress.
type Status struct {
	Ready      bool
	Stale      bool
	Topic      cursor.TopicID
	Cursor     cursor.Cursor
	LagRecords int64
	Entries    int
	Tombstones int
	Digest     []byte
	// HistoryFloor is the oldest cursor a resume is answered from the
	// change window; older resumes use the index or a snapshot.
	HistoryFloor cursor.Cursor
	HistoryBatch int
}

// Status returns the store's current status.
func (s *Store) Status() Status {
	stale := s.Stale()
	s.mu.RLock()
	defer s.mu.RUnlock()
	var lag int64
	for p := range s.st.next {
		if p < len(s.hw) {
			lag += max(0, s.hw[p]-s.st.next[p])
		}
	}
	return Status{
		Ready:        s.ready,
		Stale:        stale,
		Topic:        s.st.topic,
		Cursor:       s.st.cursor(),
		LagRecords:   lag,
		Entries:      s.st.live,
		Tombstones:   s.st.tombs,
		Digest:       s.st.dig.Bytes(),
		HistoryFloor: s.st.floor.Clone(),
		HistoryBatch: len(s.st.history),
	}
}

// Snapshot returns a consistent view of the whole state. ErrNotReady
// before the store has caught up.
func (s *Store) Snapshot() (*Snapshot, error) {
	s.mu.RLock()
	if !s.ready {
		s.mu.RUnlock()
		return nil, ErrNotReady
	}
	if snap := s.st.snap; snap != nil {
		s.mu.RUnlock()
		return snap, nil
	}
	s.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ready {
		return nil, ErrNotReady
	}
	return s.st.snapshot(), nil
}

// Get returns the live entry for key and the cursor it was read at,
// without cloning the index. ErrNotReady before the store caught up.
func (s *Store) Get(key string) (*Entry, cursor.Cursor, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.ready {
		return nil, cursor.Cursor{}, false, ErrNotReady
	}
	e, ok := s.st.tree.Get(&Entry{Key: key})
	if !ok || e.Deleted {
		return nil, s.st.cursor(), false, nil
	}
	return e, s.st.cursor(), true, nil
}

// Since returns up to max batches after seq. ErrHistoryGone or ErrRebuilt
// mean the reader must re-snapshot; no batches and no error mean nothing
// new yet (wait on Changed).
func (s *Store) Since(seq uint64, max int) ([]*Batch, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.ready {
		if seq+1 < s.st.epochStart {
			return nil, ErrRebuilt
		}
		return nil, nil
	}
	return s.st.since(seq, max)
}

// Resume says how a reader at cursor c continues.
type Resume struct {
	Kind ResumeKind
	// Seq: continue with the batches after it.
	Seq uint64
	// Snap, for ResumeDiff: the view to diff against c, taken at Seq.
	Snap *Snapshot
}

// ResumeFrom finds where a reader at c continues: ErrTopicChanged,
// ErrBehind (wait and retry), ErrHistoryGone (snapshot), ErrRebuilt (c was
// made before partitions were added: snapshot) or a Resume.
func (s *Store) ResumeFrom(c cursor.Cursor) (Resume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ready {
		return Resume{}, ErrNotReady
	}
	kind, seq, err := s.st.resume(c)
	if err != nil {
		return Resume{}, err
	}
	r := Resume{Kind: kind, Seq: seq}
	if kind == ResumeDiff {
		r.Snap = s.st.snapshot()
	}
	return r, nil
}

// CheckInLog asks Kafka for the topic's end offsets (high watermarks) and
// returns ErrBeyondLog, naming the partition, when c is past one. Every
// position a reader was ever given lies at or before the end offset of
// its time, and end offsets only grow; so c is past the end only when the
// log was truncated after c was read (an unclean leader election, a
// restore) or c was not made by a reader. Waiting for such a c is
// pointless: the offsets it names either never come, or come with other
// records. A cursor of another topic incarnation is not checked.
// Concurrent calls share requests that start after they were made.
func (s *Store) CheckInLog(ctx context.Context, c cursor.Cursor) error {
	s.mu.RLock()
	topic := s.st.topic
	s.mu.RUnlock()
	if c.Topic != topic {
		return nil
	}
	if s.Stale() {
		// Not worth a request that would only time out.
		return fmt.Errorf("%w: no answer from Kafka for over %s", ErrUnreachable, s.cfg.StaleAfter)
	}
	// The end offsets must be read after c was made: a request already
	// running may predate c and see a shorter log.
	ends, err := s.ends.do(ctx, func() (kadm.ListedOffsets, error) {
		rctx, cancel := context.WithTimeout(context.Background(), s.cfg.ProbeInterval*3)
		defer cancel()
		return s.adm.ListEndOffsets(rctx, s.cfg.Topic)
	})
	if err != nil {
		return fmt.Errorf("list end offsets of %q: %w", s.cfg.Topic, err)
	}
	for p, off := range c.Offsets {
		if off == 0 {
			continue
		}
		o, ok := ends.Lookup(s.cfg.Topic, int32(p))
		switch {
		case !ok:
			return fmt.Errorf("%w: partition %d does not exist (the cursor is at offset %d)", ErrBeyondLog, p, off)
		case o.Err != nil:
			return fmt.Errorf("list end offset of %q partition %d: %w", s.cfg.Topic, p, o.Err)
		case off > o.Offset:
			return fmt.Errorf("%w: partition %d ends at offset %d, the cursor is at %d", ErrBeyondLog, p, o.Offset, off)
		}
	}
	return nil
}

// WaitApplied blocks until the store has applied c (read-your-writes), or
// ctx ends (ErrBehind). ErrTopicChanged when c is of another topic.
func (s *Store) WaitApplied(ctx context.Context, c cursor.Cursor) error {
	for {
		s.mu.RLock()
		ready, st, ch := s.ready, s.st, s.changed
		var covered bool
		sameTopic := st.topic == c.Topic
		if ready && sameTopic {
			covered = cursor.Cursor{Topic: st.topic, Offsets: st.next}.Covers(c)
		}
		s.mu.RUnlock()
		if ready && !sameTopic {
			return ErrTopicChanged
		}
		if covered {
			return nil
		}
		select {
		case <-ctx.Done():
			if !ready {
				return fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
			}
			return fmt.Errorf("%w: %w", ErrBehind, ctx.Err())
		case <-ch:
		}
	}
}

// SchemaProblems returns, for /debug/state, the applied entries whose
// value breaks its schema and the schema documents that do not compile,
// by key (at most 1000 of each; the metrics count all).
func (s *Store) SchemaProblems() (values, schemas map[string]string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return maps.Clone(s.st.schemas.flagged), maps.Clone(s.st.schemas.invalid)
}
