package store

import (
	"fmt"
	"sort"
	"strings"

	"github.com/confgate/confgate/internal/cursor"
)

// KeyDiff is a key whose state differs between two cursors; nil means
// absent.
type KeyDiff struct {
	Key           string
	Before, After *Entry
}

// ErrDiffRange: the change history does not reach back to the diff's
// older cursor; the error names the oldest cursor it does.
var ErrDiffRange = fmt.Errorf("store: history does not reach the cursor")

// Diff returns, in key order, the keys under prefix whose state at to
// differs from their state at from, from the change history: every batch
// records the entries its changes replaced. to's zero value means the
// current cursor, which it returns. from must not be older than the
// history's floor (ErrDiffRange, naming it), and to must be applied
// (ErrBehind) and cover from.
func (s *Store) Diff(prefix string, from, to cursor.Cursor) ([]KeyDiff, cursor.Cursor, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.ready {
		return nil, cursor.Cursor{}, ErrNotReady
	}
	st := s.st
	cur := st.cursor()
	if to.Topic == (cursor.TopicID{}) {
		to = cur
	}
	switch {
	case from.Topic != st.topic || to.Topic != st.topic:
		return nil, cursor.Cursor{}, ErrTopicChanged
	case !cur.Covers(to):
		return nil, cursor.Cursor{}, ErrBehind
	case !to.Covers(from):
		return nil, cursor.Cursor{}, fmt.Errorf("%w: the newer cursor does not cover the older one", ErrBadDiff)
	case !st.recording || !from.Covers(st.floor) || len(from.Offsets) < len(st.next):
		return nil, cursor.Cursor{}, fmt.Errorf("%w: the oldest cursor this gateway's history answers from is %s", ErrDiffRange, st.floor.String())
	}
	type span struct{ before, after *Entry }
	spans := map[string]*span{}
	// Batches whose end does not pass from hold nothing after it.
	i := sort.Search(len(st.history), func(i int) bool { return !from.Covers(st.history[i].End) })
	for _, b := range st.history[i:] {
		for j, e := range b.Changes {
			if !strings.HasPrefix(e.Key, prefix) || e.Offset < from.Offset(e.Partition) || e.Offset >= to.Offset(e.Partition) {
				continue
			}
			sp := spans[e.Key]
			if sp == nil {
				sp = &span{before: b.before[j]}
				spans[e.Key] = sp
			}
			sp.after = e
		}
		if b.End.Covers(to) {
			break
		}
	}
	out := make([]KeyDiff, 0, len(spans))
	for k, sp := range spans {
		after := sp.after
		if after.Deleted {
			after = nil
		}
		if sameVersion(sp.before, after) {
			continue
		}
		out = append(out, KeyDiff{Key: k, Before: sp.before, After: after})
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Key < out[b].Key })
	return out, to.Clone(), nil
}

// ErrBadDiff: the cursors of a diff are not in order.
var ErrBadDiff = fmt.Errorf("store: invalid diff range")

func sameVersion(a, b *Entry) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Partition == b.Partition && a.Offset == b.Offset
}
