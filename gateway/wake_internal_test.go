package gateway

import (
	"slices"
	"testing"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/store"
)

func mustSel(t *testing.T, prefixes ...string) keyspace.Selector {
	t.Helper()
	sel, err := keyspace.NewSelector(prefixes)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func TestPrefixIndexMatch(t *testing.T) {
	all := &group{sel: mustSel(t), key: "all"}
	pay := &group{sel: mustSel(t, "pay"), key: "pay"}
	payments := &group{sel: mustSel(t, "payments/"), key: "payments"}
	multi := &group{sel: mustSel(t, "payments/db/", "search/"), key: "multi"}
	idx := newPrefixIndex([]*group{all, pay, payments, multi})
	for _, tc := range []struct {
		key  string
		want []string
	}{
		{"payments/db/url", []string{"all", "multi", "pay", "payments"}},
		{"payments/x", []string{"all", "pay", "payments"}},
		{"pay", []string{"all", "pay"}},
		{"pa", []string{"all"}},
		{"search/q", []string{"all", "multi"}},
		{"searc", []string{"all"}},
		{"", []string{"all"}},
	} {
		var got []string
		idx.match(tc.key, func(grp *group) { got = append(got, grp.key) })
		slices.Sort(got)
		if !slices.Equal(got, tc.want) {
			t.Errorf("match(%q) = %v, want %v", tc.key, got, tc.want)
		}
		// The index agrees with matching every selector.
		var direct []string
		for _, grp := range []*group{all, pay, payments, multi} {
			if grp.sel.Match(tc.key) {
				direct = append(direct, grp.key)
			}
		}
		slices.Sort(direct)
		if !slices.Equal(got, direct) {
			t.Errorf("match(%q) = %v, selectors say %v", tc.key, got, direct)
		}
	}
}

// dispSource is a Source with a history of batches; only what the
// dispatcher reads is implemented.
type dispSource struct {
	Source
	batches []*store.Batch // Seq 1..n
	err     error
}

func (s *dispSource) Changed() <-chan struct{} { return make(chan struct{}) }
func (s *dispSource) Since(seq uint64, limit int) ([]*store.Batch, error) {
	if s.err != nil {
		return nil, s.err
	}
	if int(seq) >= len(s.batches) {
		return nil, nil
	}
	return s.batches[seq:min(int(seq)+limit, len(s.batches))], nil
}

func batchOf(seq uint64, keys ...string) *store.Batch {
	b := &store.Batch{Seq: seq, End: cursor.Cursor{Offsets: []int64{int64(seq)}}}
	for _, k := range keys {
		b.Changes = append(b.Changes, &store.Entry{Key: k})
	}
	b.EndBytes = b.End.Encode()
	return b
}

// The skip rule: a stream may skip to the head only when nothing after its
// position concerned its group, and a group indexed late is matched only
// from where the dispatcher was when it indexed it.
func TestDispatcherQuietHead(t *testing.T) {
	src := &dispSource{batches: []*store.Batch{batchOf(1, "a/1"), batchOf(2, "b/1"), batchOf(3, "b/2")}}
	g := &Gateway{src: src, draining: make(chan struct{}), m: newMetrics(nil)}
	d := &g.disp
	d.g = g
	d.head.Store(&dispHead{floor: 0})
	a := g.groups.acquire(mustSel(t, "a/"))
	b := g.groups.acquire(mustSel(t, "b/"))

	bs, _ := src.Since(0, 10)
	d.dispatch(bs)
	for _, tc := range []struct {
		name string
		grp  *group
		pos  uint64
		skip bool
	}{
		{"a at 0: batch 1 concerns it", a, 0, false},
		{"a at 1: batches 2 and 3 do not", a, 1, true},
		{"b at 1: batch 2 concerns it", b, 1, false},
		{"b at 3: at the head", b, 3, false},
	} {
		if h := d.quietHead(tc.grp, tc.pos); (h != nil) != tc.skip || (h != nil && h.seq != 3) {
			t.Errorf("%s: quietHead = %+v, want skip %v to 3", tc.name, h, tc.skip)
		}
	}
	if a.wakes.Load() != 1 || b.wakes.Load() != 1 {
		t.Errorf("wakes a=%d b=%d, want 1 each (one round)", a.wakes.Load(), b.wakes.Load())
	}

	// A group created now was not indexed for batches 1..3: its streams
	// read the history until the dispatcher indexes it, and then skip only
	// from the dispatcher's position on.
	late := g.groups.acquire(mustSel(t, "a/"+"x/"))
	if h := d.quietHead(late, 3); h != nil {
		t.Fatalf("unindexed group may skip: %+v", h)
	}
	src.batches = append(src.batches, batchOf(4, "b/3"))
	bs, _ = src.Since(3, 10)
	d.dispatch(bs)
	if h := d.quietHead(late, 2); h != nil {
		t.Errorf("late group at 2 skips batches it was never matched against: %+v", h)
	}
	if h := d.quietHead(late, 3); h == nil || h.seq != 4 {
		t.Errorf("late group at 3: quietHead = %+v, want a skip to 4", h)
	}
	if late.wakes.Load() != 0 {
		t.Errorf("late group woken %d times by a batch that does not concern it", late.wakes.Load())
	}

	// Once the dispatcher cannot tell, nobody skips, and everyone wakes.
	src.err = store.ErrRebuilt
	d.head.Store(nil)
	d.wakeAll()
	if h := d.quietHead(a, 1); h != nil {
		t.Errorf("skip while resynchronizing: %+v", h)
	}
	if a.wakes.Load() != 2 || late.wakes.Load() != 1 {
		t.Errorf("wakeAll: wakes a=%d late=%d, want 2 and 1", a.wakes.Load(), late.wakes.Load())
	}
}

// wake signals every registered stream once, however many waves it takes;
// a stream that left is not signaled, and a wake between registering and
// waiting leaves a token, so it is not lost.
func TestGroupWakeWaves(t *testing.T) {
	grp := &group{}
	subs := make([]*subscription, 37)
	for i := range subs {
		subs[i] = &subscription{wakeCh: make(chan struct{}, 1)}
		grp.waiter(subs[i])
	}
	grp.leave(subs[0])
	grp.wake(4)
	for i, s := range subs {
		select {
		case <-s.wakeCh:
			if i == 0 {
				t.Error("a stream that left was woken")
			}
		default:
			if i != 0 {
				t.Errorf("stream %d not woken", i)
			}
		}
	}
	// Nobody registered since: a second wake signals no one.
	grp.wake(4)
	for i, s := range subs {
		if len(s.wakeCh) != 0 {
			t.Errorf("stream %d woken without waiting", i)
		}
	}
	// Registered, woken before it waits: the token is there when it does.
	ch := grp.waiter(subs[1])
	grp.wake(0)
	grp.wake(0) // a second wake does not block on the full channel
	select {
	case <-ch:
	default:
		t.Fatal("a wake between registering and waiting was lost")
	}
}
