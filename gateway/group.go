package gateway

import (
	"container/list"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/store"
	"google.golang.org/protobuf/encoding/protowire"
)

// memoBatches is how many recent batches a group keeps encoded deltas
// for. Subscribers near the head all hit it; a reader further back
// re-encodes (and is counted). Config.MemoBytes bounds the same memos in
// bytes, across every group.
const memoBatches = 1024

// What a memo entry costs besides its frames' bytes (the entry, its map
// and list slots, each frame's header), so that entries of batches a
// group does not match, which hold no frames, still count against the
// byte bound.
const (
	memoEntryOverhead = 192
	memoFrameOverhead = 48
)

// group is the subscribers that share one selector. It encodes each
// batch's delta once for all of them.
//
// Lock order: groups.mu, then group.mu, then memoBudget.mu.
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

	// matchSeq is the last batch the dispatcher found concerning this
	// group (unindexed until it indexed the group); see wake.go.
	matchSeq atomic.Uint64
	wakeMu   sync.Mutex
	waiting  map[*subscription]struct{} // streams waiting for the next wake
	wakes    atomic.Int64               // wake calls, for tests
}

// waiter registers s for the group's next wake and returns the channel
// it is woken on. Register before looking for work, so a wake in between
// is not lost (it leaves a token in the channel).
func (grp *group) waiter(s *subscription) <-chan struct{} {
	grp.wakeMu.Lock()
	if grp.waiting == nil {
		grp.waiting = map[*subscription]struct{}{}
	}
	grp.waiting[s] = struct{}{}
	grp.wakeMu.Unlock()
	return s.wakeCh
}

// leave takes a finished stream out of the waiting set.
func (grp *group) leave(s *subscription) {
	grp.wakeMu.Lock()
	delete(grp.waiting, s)
	grp.wakeMu.Unlock()
}

// wake wakes the streams waiting on the group, wave streams at a time,
// yielding the processor between waves. Woken all at once, a thousand
// streams would queue ahead of everything else on the gateway's run
// queues, a Put's goroutines included, and every write would wait for a
// whole fan-out before its answer; in waves, the rest of the gateway runs
// between them. A stream woken for nothing (it had already moved on) finds
// no work and waits again.
func (grp *group) wake(wave int) {
	grp.wakes.Add(1)
	grp.wakeMu.Lock()
	waiting := grp.waiting
	grp.waiting = nil
	grp.wakeMu.Unlock()
	n := 0
	for s := range waiting {
		select {
		case s.wakeCh <- struct{}{}:
		default: // a token is already there
		}
		if n++; wave > 0 && n%wave == 0 {
			runtime.Gosched()
		}
	}
}

// memoFrames is one batch's encoded deltas for one group. The subscriber
// that adds it to the memo accounts it in the budget once it is filled;
// until then it costs nothing there, and if it leaves the memo before
// (ring eviction, group released) gone keeps it from ever being counted.
type memoFrames struct {
	grp *group
	seq uint64

	once   sync.Once
	frames []*frame
	// filled is set by the fill when it completed: a fill that panicked
	// (its stream failed with it) leaves it false, and no subscriber may
	// take its empty frames for "nothing matched".
	filled bool

	// Guarded by memoBudget.mu.
	size int64
	elem *list.Element // in memoBudget.order while counted
	gone bool          // out of its group's memo: never count it
}

// memoBudget bounds the bytes of every group's memo together
// (Config.MemoBytes): past it the oldest entries, whichever group holds
// them, are dropped. A subscriber still sending a dropped entry's frames
// keeps them until it is done; one that needs them later re-encodes the
// same bytes.
type memoBudget struct {
	mu    sync.Mutex
	order list.List // of *memoFrames, oldest first
	bytes int64
}

type groups struct {
	mu sync.Mutex
	m  map[string]*group
	// ver changes whenever a group is added to or removed from m.
	ver atomic.Uint64
	// memo is shared by all groups, also by those not in m (tests).
	memo memoBudget
}

func (gs *groups) acquire(sel keyspace.Selector) *group {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	grp, ok := gs.m[sel.Key()]
	if !ok {
		grp = &group{sel: sel, key: sel.Key(), memo: map[uint64]*memoFrames{}}
		grp.matchSeq.Store(unindexed)
		if gs.m == nil {
			gs.m = map[string]*group{}
		}
		gs.m[grp.key] = grp
		gs.ver.Add(1)
	}
	grp.refs++
	return grp
}

// release drops a reference; the last one takes the group and its memo
// (and the memo's bytes) away.
func (gs *groups) release(grp *group, m *metrics) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	grp.refs--
	if grp.refs > 0 {
		return
	}
	delete(gs.m, grp.key)
	gs.ver.Add(1)
	grp.mu.Lock()
	for seq, mf := range grp.memo {
		delete(grp.memo, seq)
		gs.memo.forget(mf, m)
	}
	grp.mu.Unlock()
}

// list returns the live groups and the version of the set they are.
func (gs *groups) list() ([]*group, uint64) {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	live := make([]*group, 0, len(gs.m))
	for _, grp := range gs.m {
		live = append(live, grp)
	}
	return live, gs.ver.Load()
}

func (gs *groups) len() int {
	gs.mu.Lock()
	defer gs.mu.Unlock()
	return len(gs.m)
}

// frames returns the encoded deltas of b for this group; prev is the
// cursor before b.
func (grp *group) frames(g *Gateway, b *store.Batch, prev cursor.Cursor) []*frame {
	budget := &g.groups.memo
	grp.mu.Lock()
	mf, ok := grp.memo[b.Seq]
	if !ok {
		mf = &memoFrames{grp: grp, seq: b.Seq}
		if grp.full {
			old := grp.ring[grp.next]
			if om, held := grp.memo[old]; held {
				delete(grp.memo, old)
				budget.forget(om, g.m)
			}
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
		mf.filled = true
	})
	if !mf.filled {
		// Its fill panicked on another stream: take it out and encode
		// here (a panic again fails this stream too, never a silent gap).
		grp.drop(mf)
		fs := g.deltaFrames(b, prev, grp.sel, nil)
		g.m.encDelta.Add(float64(len(fs)))
		return fs
	}
	if ok {
		g.m.hitDelta.Inc()
	} else {
		budget.add(mf, g.memoLimit(), g.m)
	}
	return mf.frames
}

// drop takes mf out of the group's memo, if it is still there.
func (grp *group) drop(mf *memoFrames) {
	grp.mu.Lock()
	if grp.memo[mf.seq] == mf {
		delete(grp.memo, mf.seq)
	}
	grp.mu.Unlock()
}

func (g *Gateway) memoLimit() int64 {
	if g.cfg.MemoBytes > 0 {
		return g.cfg.MemoBytes
	}
	return Defaults().MemoBytes // a Gateway built without New (package tests)
}

// add counts a filled entry and drops the oldest entries, of any group,
// while the memo is over limit: possibly mf itself, when it alone is
// larger (its subscriber still sends it). Called without group locks.
func (mb *memoBudget) add(mf *memoFrames, limit int64, m *metrics) {
	size := int64(memoEntryOverhead)
	for _, f := range mf.frames {
		size += int64(cap(f.b)) + memoFrameOverhead
	}
	var victims []*memoFrames
	mb.mu.Lock()
	if !mf.gone && mf.elem == nil {
		mf.size = size
		mf.elem = mb.order.PushBack(mf)
		mb.bytes += size
		for mb.bytes > limit && mb.order.Len() > 0 {
			v := mb.order.Remove(mb.order.Front()).(*memoFrames)
			v.elem, v.gone = nil, true
			mb.bytes -= v.size
			victims = append(victims, v)
		}
		m.memoBytes.Set(float64(mb.bytes))
	}
	mb.mu.Unlock()
	if len(victims) == 0 {
		return
	}
	m.memoDropped.Add(float64(len(victims)))
	// Out of the groups' maps after the budget's lock is released (lock
	// order). Until then a subscriber may still find one and use it: its
	// frames are right, it is merely no longer counted.
	for _, v := range victims {
		v.grp.drop(v)
	}
}

// forget takes mf out of the budget (it left its group's memo, which the
// caller holds locked) and keeps it from being counted later, when it is
// still being filled.
func (mb *memoBudget) forget(mf *memoFrames, m *metrics) {
	mb.mu.Lock()
	mf.gone = true
	if mf.elem != nil {
		mb.order.Remove(mf.elem)
		mf.elem = nil
		mb.bytes -= mf.size
		m.memoBytes.Set(float64(mb.bytes))
	}
	mb.mu.Unlock()
}

// deltaFrames encodes the changes of b that sel matches (and keep, when
// set, accepts) as one or more deltas. A delta that would exceed the chunk
// size is cut between records, never inside a change set, and each part
// carries the cursor after its last record, which is a consistent position
// of its own.
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
		// A change set is never cut: it arrives in one delta (at most
		// store.MaxSetBytes, within the clients' message limit).
		if len(body) > 0 && len(body)+len(field) > g.cfg.ChunkBytes && b.CanCutAfter(i-1) {
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
