package store

import (
	"sort"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/digest"
	"github.com/confgate/confgate/internal/keyspace"
)

// SelectedAt is the digest of a selector's entries at a cursor, and
// whether any change it selects came after that cursor.
type SelectedAt struct {
	Digest []byte
	// ChangedSince: a change the selector matches lies between the cursor
	// and the state the digest was computed from.
	ChangedSince bool
}

// DigestsAt computes, for one selector, the digest of its entries at each
// of the cursors (SnapshotEnd.digest's definition), from the current state
// and the change history's before-images: the current digest with every
// selected change after the cursor undone. ok[i] is false when cursors[i]
// is not answerable: another topic, not applied yet, or older than the
// history. One scan of the selected entries serves all the cursors; the
// whole keyspace needs none (its digest is kept as the state changes).
func (s *Store) DigestsAt(sel keyspace.Selector, cursors []cursor.Cursor) (out []SelectedAt, ok []bool) {
	out, ok = make([]SelectedAt, len(cursors)), make([]bool, len(cursors))
	snap, err := s.Snapshot()
	if err != nil {
		return out, ok
	}
	head := snap.dig
	if !sel.All() {
		head = digest.Digest{}
		snap.Scan(sel, func(e *Entry) bool {
			head.Add(e.DigestHash())
			return true
		})
	}
	s.mu.RLock()
	st := s.st
	// The history after the snapshot's batch moved the state further: those
	// batches are undone too, so the result is relative to the snapshot.
	var hist []*Batch
	firstAfter := 0
	if st.recording {
		hist = append(hist, st.history...)
		firstAfter = sort.Search(len(hist), func(i int) bool { return hist[i].Seq > snap.Seq })
	}
	floor, topic := st.floor, st.topic
	recording := st.recording
	s.mu.RUnlock()
	for i, c := range cursors {
		if c.Topic != topic || !recording || !snap.Cursor.Covers(c) || !c.Covers(floor) || len(c.Offsets) < len(snap.Cursor.Offsets) {
			continue
		}
		d := head
		changed := false
		// Undo, newest first, every selected change at or after c up to
		// the snapshot.
		for j := firstAfter - 1; j >= 0; j-- {
			b := hist[j]
			if c.Covers(b.End) {
				break
			}
			for k := len(b.Changes) - 1; k >= 0; k-- {
				e := b.Changes[k]
				if e.Offset < c.Offset(e.Partition) || !sel.Match(e.Key) {
					continue
				}
				changed = true
				if !e.Deleted {
					d.Remove(e.DigestHash())
				}
				if prev := b.before[k]; prev != nil {
					d.Add(prev.DigestHash())
				}
			}
		}
		out[i], ok[i] = SelectedAt{Digest: d.Bytes(), ChangedSince: changed}, true
	}
	return out, ok
}
