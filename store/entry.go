package store

import (
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/digest"
	"github.com/confgate/confgate/internal/keyspace"
	"github.com/google/btree"
	"github.com/zeebo/xxh3"
)

// Header is a Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Entry is one applied record: a live value or, with Deleted, a tombstone.
// Entries are immutable once applied; readers may keep them.
type Entry struct {
	Key         string
	Value       []byte
	ContentType string
	Headers     []Header
	Partition   int32
	Offset      int64
	Deleted     bool

	hash      xxh3.Uint128 // digest contribution of a live entry
	appliedAt int64        // unix nanos, for tombstone retention
}

// DigestHash is the entry's contribution to the state digest.
func (e *Entry) DigestHash() xxh3.Uint128 { return e.hash }

// Size approximates the memory an entry holds, for history budgets.
func (e *Entry) Size() int64 {
	n := int64(len(e.Key) + len(e.Value) + len(e.ContentType) + 96)
	for _, h := range e.Headers {
		n += int64(len(h.Key) + len(h.Value) + 32)
	}
	return n
}

// Batch is a run of applied records, in log order, and the cursor after
// them. Changes holds only records that changed state (puts and deletes).
type Batch struct {
	Seq     uint64
	Changes []*Entry
	// before[i] is the live entry Changes[i] replaced (nil: absent), for
	// diffs between cursors.
	before []*Entry
	// cuts[i] reports whether a delta may end after Changes[i]: no change
	// set is open there (nil: after any change).
	cuts []bool
	// End is the cursor after the batch; EndBytes its wire form.
	End      cursor.Cursor
	EndBytes []byte
	size     int64
}

// Snapshot is a consistent, immutable view of the whole state at one cursor.
// It stays valid while the store moves on.
type Snapshot struct {
	tree *btree.BTreeG[*Entry]
	// Cursor is the position the snapshot reflects.
	Cursor cursor.Cursor
	// Seq is the last batch included; a subscriber continues after it.
	Seq uint64
	// dig is the digest of every live entry, kept as the state changes:
	// a whole-keyspace digest needs no scan.
	dig digest.Digest
}

// Get returns the live entry for key.
func (s *Snapshot) Get(key string) (*Entry, bool) {
	e, ok := s.tree.Get(&Entry{Key: key})
	if !ok || e.Deleted {
		return nil, false
	}
	return e, true
}

// Scan calls fn for every live entry the selector matches, in key order,
// until fn returns false.
func (s *Snapshot) Scan(sel keyspace.Selector, fn func(*Entry) bool) {
	s.scan(sel, "", false, fn)
}

// ScanAfter is Scan from the first key greater than after ("": from the
// start), found in O(log n): a reader resuming a scan mid-way (the next
// snapshot chunk) does not walk what it has already passed.
func (s *Snapshot) ScanAfter(sel keyspace.Selector, after string, fn func(*Entry) bool) {
	s.scan(sel, after, false, fn)
}

// ScanAll is Scan including tombstones still remembered.
func (s *Snapshot) ScanAll(sel keyspace.Selector, fn func(*Entry) bool) {
	s.scan(sel, "", true, fn)
}

func (s *Snapshot) scan(sel keyspace.Selector, after string, tombstones bool, fn func(*Entry) bool) {
	// from is the pivot of a walk that starts at p: p itself, or the
	// smallest key greater than after when that is further.
	from := func(p string) *Entry {
		if after != "" && after >= p {
			return &Entry{Key: after + "\x00"}
		}
		return &Entry{Key: p}
	}
	visit := func(e *Entry) bool {
		if e.Deleted && !tombstones {
			return true
		}
		return fn(e)
	}
	if sel.All() {
		s.tree.AscendGreaterOrEqual(from(""), visit)
		return
	}
	for _, p := range sel.Prefixes() {
		stopped := false
		s.tree.AscendGreaterOrEqual(from(p), func(e *Entry) bool {
			if len(e.Key) < len(p) || e.Key[:len(p)] != p {
				return false
			}
			if !visit(e) {
				stopped = true
				return false
			}
			return true
		})
		if stopped {
			return
		}
	}
}

func lessEntry(a, b *Entry) bool { return a.Key < b.Key }

// CanCutAfter reports whether a delta built from b may end after
// Changes[i] with a cursor of its own: no change set is open there, so
// that cursor covers each set whole or not at all.
func (b *Batch) CanCutAfter(i int) bool { return b.cuts == nil || b.cuts[i] }
