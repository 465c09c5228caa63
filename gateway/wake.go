package gateway

import (
	"math"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/store"
)

// The dispatcher wakes only the streams a batch concerns. One goroutine
// per gateway follows the store's batches, matches each change's key
// against the live groups' prefixes, records in each matched group the
// last batch that concerned it (matchSeq) and wakes that group's
// streams. A stream whose group nothing concerned since its position
// skips ahead to the dispatcher's head without reading the history, on
// its own time (its progress tick). With 1,000 selectors and a write to
// one of them, one group's streams wake, not all of them.
//
// Why skipping is exact: the dispatcher publishes a head only after it
// raised matchSeq of every group a batch up to that head concerned, and
// matchSeq only grows. A stream reads the head, then matchSeq: if matchSeq
// is at or below the stream's position, no batch between the position
// and the head selected anything for it. A group the dispatcher has not
// indexed yet has matchSeq at its maximum, so its streams read the
// history until it is indexed, from the dispatcher's position on.
type dispatcher struct {
	g    *Gateway
	once sync.Once
	// head is where the dispatcher is; nil while it resynchronizes.
	head atomic.Pointer[dispHead]

	// wave is how many streams the dispatcher wakes before it yields
	// (group.wake).
	wave int

	// Owned by the run goroutine.
	pos uint64
	ver uint64
	idx prefixIndex
}

// dispHead: every batch in (floor, seq] was matched against every group
// indexed at the time; end is the cursor after seq.
type dispHead struct {
	floor    uint64
	seq      uint64
	end      cursor.Cursor
	endBytes []byte
}

// unindexed is a new group's matchSeq: never quiet until indexed.
const unindexed = math.MaxUint64

// wakeWave is how many streams are woken between yields: a few per
// processor keeps them all busy without queueing a whole fan-out ahead of
// the rest of the gateway.
func wakeWave() int { return 8 * runtime.GOMAXPROCS(0) }

// dispatchBatches is how many batches one round matches at most.
const dispatchBatches = 1024

// start runs the dispatcher once, until the gateway drains.
func (d *dispatcher) start(g *Gateway) {
	d.once.Do(func() {
		d.g = g
		d.wave = wakeWave()
		go d.run()
	})
}

func (d *dispatcher) run() {
	src := d.g.src
	synced := false
	for {
		changed := src.Changed()
		if !synced {
			snap, err := src.Snapshot()
			if err != nil {
				if !d.wait(changed) {
					return
				}
				continue
			}
			d.pos = snap.Seq
			d.head.Store(&dispHead{floor: snap.Seq, seq: snap.Seq, end: snap.Cursor, endBytes: snap.Cursor.Encode()})
			synced = true
			continue
		}
		batches, err := src.Since(d.pos, dispatchBatches)
		if err != nil {
			// Rebuilt, or the dispatcher fell out of the window: nothing
			// is known to be quiet until it resynchronizes, so every
			// stream reads the history (and meets the same error).
			d.head.Store(nil)
			d.wakeAll()
			synced = false
			continue
		}
		if len(batches) == 0 {
			if !d.wait(changed) {
				return
			}
			continue
		}
		d.dispatch(batches)
	}
}

// wait blocks until ch closes (true) or the gateway drains (false).
func (d *dispatcher) wait(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	case <-d.g.draining:
		return false
	}
}

// dispatch matches batches against the groups, then publishes the new
// head, then wakes the matched groups: in that order (see the type).
func (d *dispatcher) dispatch(batches []*store.Batch) {
	d.reindex()
	matched := map[*group]uint64{}
	for _, b := range batches {
		for _, e := range b.Changes {
			d.idx.match(e.Key, func(grp *group) { matched[grp] = b.Seq })
		}
	}
	for grp, seq := range matched {
		for {
			old := grp.matchSeq.Load()
			if old >= seq || grp.matchSeq.CompareAndSwap(old, seq) {
				break
			}
		}
	}
	last := batches[len(batches)-1]
	h := d.head.Load()
	d.head.Store(&dispHead{floor: h.floor, seq: last.Seq, end: last.End, endBytes: last.EndBytes})
	d.pos = last.Seq
	for grp := range matched {
		grp.wake(d.wave)
	}
}

// reindex rebuilds the prefix index when groups came or went. A group
// seen for the first time (still unindexed) is matched from the
// dispatcher's position on; for the others the swap does nothing.
func (d *dispatcher) reindex() {
	gs := &d.g.groups
	if gs.ver.Load() == d.ver {
		return
	}
	live, ver := gs.list()
	d.ver = ver
	d.idx = newPrefixIndex(live)
	for _, grp := range live {
		grp.matchSeq.CompareAndSwap(unindexed, d.pos)
	}
}

// wakeAll wakes every live group's streams.
func (d *dispatcher) wakeAll() {
	live, _ := d.g.groups.list()
	for _, grp := range live {
		grp.wake(d.wave)
	}
}

// quietHead returns the head a stream of grp at pos may skip to: nothing
// after pos concerned grp up to it. nil when the stream must read the
// history (something matched, or the dispatcher cannot tell).
func (d *dispatcher) quietHead(grp *group, pos uint64) *dispHead {
	h := d.head.Load()
	if h == nil || h.floor > pos || h.seq <= pos {
		return nil
	}
	if grp.matchSeq.Load() > pos {
		return nil
	}
	return h
}

// prefixIndex finds the groups whose selector matches a key with one map
// lookup per distinct prefix length, rather than one match per group.
type prefixIndex struct {
	all     []*group // selectors that select every key
	byPref  map[string][]*group
	lengths []int // distinct prefix lengths, ascending
}

func newPrefixIndex(groups []*group) prefixIndex {
	idx := prefixIndex{byPref: map[string][]*group{}}
	for _, grp := range groups {
		if grp.sel.All() {
			idx.all = append(idx.all, grp)
			continue
		}
		for _, p := range grp.sel.Prefixes() {
			if _, ok := idx.byPref[p]; !ok {
				idx.lengths = append(idx.lengths, len(p))
			}
			idx.byPref[p] = append(idx.byPref[p], grp)
		}
	}
	slices.Sort(idx.lengths)
	idx.lengths = slices.Compact(idx.lengths)
	return idx
}

// match calls fn for every group that selects key (a group may be called
// more than once when several of its prefixes match: a normalized
// selector has no prefix covering another, so it is not).
func (idx *prefixIndex) match(key string, fn func(*group)) {
	for _, grp := range idx.all {
		fn(grp)
	}
	for _, l := range idx.lengths {
		if l > len(key) {
			break
		}
		for _, grp := range idx.byPref[key[:l]] {
			fn(grp)
		}
	}
}
