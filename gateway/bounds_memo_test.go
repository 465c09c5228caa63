package gateway

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/store"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

func memoGateway(limit int64) *Gateway {
	return &Gateway{cfg: Config{ChunkBytes: 1 << 20, MemoBytes: limit}, m: newMetrics(nil), cache: &payloadCache{},
		log: slog.New(slog.DiscardHandler)}
}

// memoBatch is batch seq of one put per prefix, each value of size bytes.
func memoBatch(seq uint64, size int, prefixes ...string) (*store.Batch, cursor.Cursor) {
	topic := cursor.TopicID{7}
	prev := cursor.Cursor{Topic: topic, Offsets: []int64{int64(seq-1) * int64(len(prefixes))}}
	b := &store.Batch{Seq: seq}
	for i, p := range prefixes {
		b.Changes = append(b.Changes, &store.Entry{Key: fmt.Sprintf("%sk%d", p, seq%5), Value: bytes.Repeat([]byte{byte('a' + i)}, size),
			Offset: prev.Offsets[0] + int64(i)})
	}
	b.End = cursorAfter(prev, b.Changes)
	b.EndBytes = b.End.Encode()
	return b, prev
}

func mustSelector(t *testing.T, prefixes ...string) keyspace.Selector {
	t.Helper()
	s, err := keyspace.NewSelector(prefixes)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sameFrames(a, b []*frame) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].b, b[i].b) {
			return false
		}
	}
	return true
}

// checkMemoAccounting checks that the budget's bytes are exactly the
// sizes of the entries it counts, that each counted entry is still in its
// group's memo, and that the gauge says the same.
func checkMemoAccounting(t *testing.T, g *Gateway) int64 {
	t.Helper()
	mb := &g.groups.memo
	mb.mu.Lock()
	var sum int64
	var counted []*memoFrames
	for el := mb.order.Front(); el != nil; el = el.Next() {
		mf := el.Value.(*memoFrames)
		sum += mf.size
		counted = append(counted, mf)
	}
	bytesNow := mb.bytes
	mb.mu.Unlock()
	if sum != bytesNow {
		t.Fatalf("memo counts %d bytes, its entries hold %d", bytesNow, sum)
	}
	if gv := gaugeValue(t, g.m.memoBytes); int64(gv) != bytesNow {
		t.Fatalf("memo bytes gauge %v, memo holds %d", gv, bytesNow)
	}
	for _, mf := range counted {
		mf.grp.mu.Lock()
		held := mf.grp.memo[mf.seq] == mf
		mf.grp.mu.Unlock()
		if !held {
			t.Fatalf("batch %d is counted but no longer in its group's memo", mf.seq)
		}
	}
	return bytesNow
}

// The memo is bounded in bytes across every group (not per group): with
// many selectors and large values it stays within MemoBytes, drops the
// oldest first and counts the drops, and a subscriber that needs a
// dropped batch re-encodes exactly the same bytes. Releasing the groups
// gives every byte back.
func TestMemoBoundedInBytesAcrossGroups(t *testing.T) {
	for _, tc := range []struct {
		name      string
		limit     int64
		groups    int
		batches   int
		valueSize int
		wantDrops bool
	}{
		{"large values, many selectors", 1 << 20, 8, 24, 128 << 10, true},
		{"one entry larger than the bound", 64 << 10, 2, 5, 100 << 10, true},
		{"small values, within bound", 8 << 20, 4, 50, 100, false},
		{"unmatched batches cost bytes too", 32 << 10, 40, 100, 10, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := memoGateway(tc.limit)
			var grps []*group
			for i := range tc.groups {
				// Distinct selectors that all match "app/"; the last case's
				// selectors match nothing the batches hold.
				p := "app/"
				if strings.HasPrefix(tc.name, "unmatched") {
					p = "none/"
				}
				grps = append(grps, g.groups.acquire(mustSelector(t, p, fmt.Sprintf("other%d/", i))))
			}
			var unbounded int64
			for seq := uint64(1); seq <= uint64(tc.batches); seq++ {
				b, prev := memoBatch(seq, tc.valueSize, "app/")
				for _, grp := range grps {
					got := grp.frames(g, b, prev)
					want := g.deltaFrames(b, prev, grp.sel, nil)
					if !sameFrames(got, want) {
						t.Fatalf("batch %d: memo frames differ from a fresh encoding", seq)
					}
					for _, f := range got {
						unbounded += int64(len(f.b))
					}
					if n := checkMemoAccounting(t, g); n > tc.limit {
						t.Fatalf("memo holds %d bytes, bound %d", n, tc.limit)
					}
				}
			}
			dropped := counterValue(t, g.m.memoDropped)
			t.Logf("%d groups x %d batches: %d bytes of deltas, memo holds %v (bound %d), %v dropped",
				tc.groups, tc.batches, unbounded, gaugeValue(t, g.m.memoBytes), tc.limit, dropped)
			if tc.wantDrops != (dropped > 0) {
				t.Fatalf("%v drops, want drops: %v", dropped, tc.wantDrops)
			}
			// The oldest went first: if batch 1 is still held by some
			// group, nothing newer was dropped from that group.
			for _, grp := range grps {
				grp.mu.Lock()
				oldestHeld := uint64(0)
				for seq := range grp.memo {
					if oldestHeld == 0 || seq < oldestHeld {
						oldestHeld = seq
					}
				}
				for seq := oldestHeld; oldestHeld != 0 && seq <= uint64(tc.batches); seq++ {
					if _, ok := grp.memo[seq]; !ok {
						grp.mu.Unlock()
						t.Fatalf("batch %d dropped while older batch %d is held", seq, oldestHeld)
					}
				}
				grp.mu.Unlock()
			}
			// A lagging subscriber asks for the first batch again.
			enc := counterValue(t, g.m.encDelta)
			b, prev := memoBatch(1, tc.valueSize, "app/")
			got := grps[0].frames(g, b, prev)
			if !sameFrames(got, g.deltaFrames(b, prev, grps[0].sel, nil)) {
				t.Fatal("a dropped batch re-encoded to different bytes")
			}
			if tc.wantDrops && len(got) > 0 && counterValue(t, g.m.encDelta) == enc {
				t.Fatal("a dropped batch was served without encoding it again")
			}
			checkMemoAccounting(t, g)
			for _, grp := range grps {
				g.groups.release(grp, g.m)
			}
			if n := checkMemoAccounting(t, g); n != 0 || g.groups.memo.order.Len() != 0 {
				t.Fatalf("released every group, memo still holds %d bytes in %d entries", n, g.groups.memo.order.Len())
			}
		})
	}
}

// Subscribers of a few groups race on the same batches while a tiny bound
// drops entries as they are filled and the count bound evicts others:
// every subscriber gets the right frames, and the accounting is exact.
func TestMemoConcurrentFillAndDrop(t *testing.T) {
	g := memoGateway(48 << 10)
	var grps []*group
	for i := range 3 {
		grps = append(grps, g.groups.acquire(mustSelector(t, "app/", fmt.Sprintf("g%d/", i))))
	}
	const batches = memoBatches + 200 // the count bound evicts too
	want := make([][]*frame, batches+1)
	for seq := uint64(1); seq <= batches; seq++ {
		b, prev := memoBatch(seq, int(seq%7)<<10, "app/", "g1/")
		want[seq] = g.deltaFrames(b, prev, grps[0].sel, nil)
	}
	var wg sync.WaitGroup
	var bad atomic.Int64
	for w := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			grp := grps[w%len(grps)]
			for seq := uint64(1); seq <= batches; seq++ {
				b, prev := memoBatch(seq, int(seq%7)<<10, "app/", "g1/")
				got := grp.frames(g, b, prev)
				if grp == grps[0] && !sameFrames(got, want[seq]) {
					bad.Add(1)
				}
				// Lagging readers go back now and then.
				if seq%97 == 0 {
					old, oprev := memoBatch(seq/2+1, int((seq/2+1)%7)<<10, "app/", "g1/")
					if got := grp.frames(g, old, oprev); grp == grps[0] && !sameFrames(got, want[seq/2+1]) {
						bad.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d wrong frame sets", n)
	}
	if n := checkMemoAccounting(t, g); n > 48<<10 {
		t.Fatalf("memo holds %d bytes past its bound", n)
	}
	for _, grp := range grps {
		grp.mu.Lock()
		if len(grp.memo) > memoBatches {
			t.Errorf("group holds %d batches, count bound %d", len(grp.memo), memoBatches)
		}
		grp.mu.Unlock()
	}
	t.Logf("dropped %v, memo %v bytes", counterValue(t, g.m.memoDropped), gaugeValue(t, g.m.memoBytes))
	for _, grp := range grps {
		g.groups.release(grp, g.m)
	}
	if n := checkMemoAccounting(t, g); n != 0 {
		t.Fatalf("memo holds %d bytes after every group left", n)
	}
}

// panicOnce is a log handler that panics the first time it is used: the
// first subscriber to fill a memo entry with an unencodable change panics
// inside the sync.Once.
type panicOnce struct {
	slog.Handler
	fired atomic.Bool
}

func (h *panicOnce) Enabled(context.Context, slog.Level) bool { return true }

func (h *panicOnce) Handle(ctx context.Context, r slog.Record) error {
	if h.fired.CompareAndSwap(false, true) {
		panic("injected")
	}
	return h.Handler.Handle(ctx, r)
}

// A fill that panics (the handler's recover fails that one stream) must
// not leave an empty entry that other subscribers of the group take for
// "nothing matched": that would be a silent gap. They re-encode instead.
func TestMemoFillPanicIsNotAGap(t *testing.T) {
	g := memoGateway(1 << 20)
	g.log = slog.New(&panicOnce{Handler: slog.DiscardHandler})
	grp := g.groups.acquire(mustSelector(t, "app/"))
	b, prev := memoBatch(1, 100, "app/")
	// An entry that cannot be encoded (not UTF-8) next to a good one.
	b.Changes = append(b.Changes, &store.Entry{Key: "app/\xff", Value: []byte("x"), Offset: 1})
	b.End = cursorAfter(prev, b.Changes)
	b.EndBytes = b.End.Encode()

	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("the injected panic did not happen")
			}
		}()
		grp.frames(g, b, prev)
	}()
	got := grp.frames(g, b, prev)
	if len(got) != 1 || !sameFrames(got, g.deltaFrames(b, prev, grp.sel, nil)) {
		t.Fatalf("after a panicked fill: %d frames, want the batch's one delta", len(got))
	}
	if counterValue(t, g.m.unencodable) < 1 {
		t.Fatal("the unencodable entry was not counted")
	}
	g.groups.release(grp, g.m)
	checkMemoAccounting(t, g)
}
