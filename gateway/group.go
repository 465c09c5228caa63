package gateway

import (
	"slices"
	"sync"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/store"
	"google.golang.org/protobuf/encoding/protowire"
)

// memoBatches is how many recent batches a group keeps encoded deltas
// for. Subscribers near the head all hit it; a reader further back
// re-encodes (and is counted).
const memoBatches = 1024

// group is the subscribers that share one selector. It encodes each
// batch's delta once for all of them.
type group struct {
	sel  keyspace.Selector
	key  string
	refs int // guarded by groups.mu

	mu   sync.Mutex
	memo map[uint64]*memoFrames
	// ring holds the memo's keys in insertion order; next is where the
	// next key goes, evicting the oldest once the ring is full.
	ring [memoBatches]uint64
	next int
	full bool
}

type memoFrames struct {
	once   sync.Once
	frames []*frame
}

type groups struct {
	mu sync.Mutex
	m  map[string]*group
}

func (gs *groups) acquire(sel keyspace.Selector) *group {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	grp, ok := gs.m[sel.Key()]
	if !ok {
		grp = &group{sel: sel, key: sel.Key(), memo: map[uint64]*memoFrames{}}
		gs.m[grp.key] = grp
	}
	grp.refs++
	return grp
}

func (gs *groups) release(grp *group) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	grp.refs--
	if grp.refs == 0 {
		delete(gs.m, grp.key)
	}
}

func (gs *groups) len() int {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return len(gs.m)
}

// frames returns the encoded deltas of b for this group; prev is the
// cursor before b.
func (grp *group) frames(g *Gateway, b *store.Batch, prev cursor.Cursor) []*frame {
	grp.mu.Lock()
	mf, ok := grp.memo[b.Seq]
	if !ok {
		mf = &memoFrames{}
		if grp.full {
			delete(grp.memo, grp.ring[grp.next])
		}
		grp.memo[b.Seq] = mf
		grp.ring[grp.next] = b.Seq
		grp.next = (grp.next + 1) % memoBatches
		grp.full = grp.full || grp.next == 0
	}
	grp.mu.Unlock()
	mf.once.Do(func() {
		mf.frames = g.deltaFrames(b, prev, grp.sel, nil)
		if len(mf.frames) > 0 {
			g.m.encDelta.Add(float64(len(mf.frames)))
		}
	})
	if ok {
		g.m.hitDelta.Inc()
	}
	return mf.frames
}

// deltaFrames encodes the changes of b that sel matches (and keep, when
// set, accepts) as one or more deltas. A delta that would exceed the chunk
// size is cut between records, and each part carries the cursor after its
// last record, which is a consistent position of its own.
//
// floor, when set, is a resume cursor: the client already holds everything
// below it, so every cursor sent is raised to it per partition. Batches are
// cut differently on every gateway, so a batch end may lag the client's
// cursor on some partition, and a cursor must never go backwards.
func (g *Gateway) deltaFrames(b *store.Batch, prev cursor.Cursor, sel keyspace.Selector, floor *cursor.Cursor) []*frame {
	keep := func(e *store.Entry) bool { return floor == nil || e.Offset >= floor.Offset(e.Partition) }
	end := b.EndBytes
	if floor != nil {
		end = cursor.Max(b.End, *floor).Encode()
	}
	var (
		out  []*frame
		body []byte
	)
	for i, e := range b.Changes {
		if !sel.Match(e.Key) || !keep(e) {
			continue
		}
		eb, ok := g.encoded(e)
		if !ok {
			continue
		}
		field := changeField(eb, e.Deleted)
		if len(body) > 0 && len(body)+len(field) > g.cfg.ChunkBytes {
			cut := cursorAfter(prev, b.Changes[:i])
			if floor != nil {
				cut = cursor.Max(cut, *floor)
			}
			out = append(out, deltaFrame(body, cut.Encode(), false))
			body = nil
		}
		body = append(body, field...)
	}
	if len(body) > 0 {
		out = append(out, deltaFrame(body, end, false))
	}
	return out
}

// changeField encodes a Delta.changes element holding a put or a delete.
func changeField(entryBytes []byte, deleted bool) []byte {
	n := fieldChangePut
	if deleted {
		n = fieldChangeDelete
	}
	inner := make([]byte, 0, len(entryBytes)+6)
	inner = appendField(inner, n, entryBytes)
	return appendField(make([]byte, 0, len(inner)+6), fieldDeltaChanges, inner)
}

// cursorAfter is prev moved past the given changes.
func cursorAfter(prev cursor.Cursor, changes []*store.Entry) cursor.Cursor {
	c := prev.Clone()
	for _, e := range changes {
		for int(e.Partition) >= len(c.Offsets) {
			c.Offsets = append(c.Offsets, 0)
		}
		c.Offsets[e.Partition] = max(c.Offsets[e.Partition], e.Offset+1)
	}
	return c
}

// coalesced builds one delta holding, per key, only the latest of changes
// (latest wins), in key order. ok is false when it would exceed limit:
// the caller sends a snapshot instead.
func (g *Gateway) coalesced(latest map[string]*store.Entry, end []byte, limit int) (*frame, bool) {
	keys := make([]string, 0, len(latest))
	for k := range latest {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var body []byte
	for _, k := range keys {
		e := latest[k]
		eb, ok := g.encoded(e)
		if !ok {
			continue
		}
		body = append(body, changeField(eb, e.Deleted)...)
		if len(body) > limit {
			return nil, false
		}
	}
	if len(body)+len(end)+protowire.SizeTag(1)*4 > limit {
		return nil, false
	}
	return deltaFrame(body, end, true), true
}
