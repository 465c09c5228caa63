package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// gauge reads a metric without a testing.T, for sampler goroutines.
func gauge(g *testkit.Gateway, name, label string) float64 {
	mfs, err := g.Registry.Gather()
	if err != nil {
		return -1
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				match = match || lp.GetValue() == label
			}
			if match {
				sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// sampleMax polls a metric until stop is called and returns its maximum.
func sampleMax(g *testkit.Gateway, name string) (stop func() float64) {
	var (
		peak atomic.Int64
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if v := int64(gauge(g, name, "")); v > peak.Load() {
				peak.Store(v)
			}
			select {
			case <-done:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	return func() float64 {
		close(done)
		wg.Wait()
		if v := int64(gauge(g, name, "")); v > peak.Load() {
			peak.Store(v)
		}
		return float64(peak.Load())
	}
}

func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// putConfig writes n entries of size bytes under prefix and returns the
// last write's cursor.
func putConfig(t *testing.T, g *testkit.Gateway, prefix string, n, size int) []byte {
	t.Helper()
	var last []byte
	for i := range n {
		last = testkit.Put(t, g, fmt.Sprintf("%s%04d", prefix, i), strings.Repeat(string(rune('a'+i%26)), size)).Cursor
	}
	return last
}

// Invariant 9: GetSnapshot readers that never grant flow-control credit
// hold about one chunk each on the gateway, not a whole encoded snapshot:
// live heap grows by far less than readers x snapshot size, with the cache
// on and off. Before, each held a full copy (40 readers pinned 2.2 GB on
// a 50 MB config).
func TestStalledSnapshotReadersHoldOneChunk(t *testing.T) {
	const (
		readers = 32
		entries = 64
		size    = 128 << 10 // 8 MiB in all
	)
	for _, tc := range []struct {
		name  string
		cache int64
	}{
		{"cache off", 0},
		{"cache 16 MiB", 16 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := testkit.StartKafka(t)
			g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{
				Gateway: gateway.Config{ChunkBytes: 256 << 10, CacheBytes: tc.cache},
			})
			last := putConfig(t, g, "cfg/", entries, size)
			view, _, _ := testkit.Snapshot(t, g, "cfg/")
			if len(view) != entries {
				t.Fatalf("snapshot has %d entries", len(view))
			}
			snapBytes := uint64(entries * size)
			before := liveHeap()
			sentBefore := testkit.Metric(t, g, "confgate_gateway_messages_sent_total", "snapshot_chunk")

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			cl := testkit.SlowReaderClient(t, g)
			for i := range readers {
				// Distinct selectors: nothing shared between readers.
				if _, err := cl.GetSnapshot(ctx, &confgatev1.GetSnapshotRequest{Selector: sel("cfg/", fmt.Sprintf("r%d/", i)), MinCursor: last}); err != nil {
					t.Fatal(err)
				}
			}
			// Every reader sent what flow control let through and is
			// blocked: all streams open, some chunk sent by each, no build
			// running, the count of sent chunks stable.
			testkit.Eventually(t, 15*time.Second, "every reader stalled", func() bool {
				return testkit.Metric(t, g, "confgate_gateway_subscribers", "GetSnapshot") == readers &&
					testkit.Metric(t, g, "confgate_gateway_messages_sent_total", "snapshot_chunk")-sentBefore >= readers &&
					testkit.Metric(t, g, "confgate_gateway_snapshot_builds", "") == 0
			})
			prev := -1.0
			testkit.Eventually(t, 10*time.Second, "sending to settle", func() bool {
				time.Sleep(50 * time.Millisecond)
				n := testkit.Metric(t, g, "confgate_gateway_messages_sent_total", "snapshot_chunk")
				settled := n == prev
				prev = n
				return settled
			})
			after := liveHeap()
			growth := int64(after) - int64(before)
			t.Logf("%d stalled readers of a %d MiB snapshot (chunks of 256 KiB): live heap grew by %.1f MiB (%.2f MiB per reader); a whole copy each would be %d MiB",
				readers, snapBytes>>20, float64(growth)/(1<<20), float64(growth)/(1<<20)/readers, readers*snapBytes>>20)
			if limit := int64(readers * snapBytes / 4); growth > limit {
				t.Fatalf("live heap grew by %d bytes with %d stalled readers, more than a quarter of a snapshot each (%d)", growth, readers, limit)
			}
			cancel()
			testkit.Eventually(t, 10*time.Second, "the stalled streams to end", func() bool {
				return testkit.Metric(t, g, "confgate_gateway_subscribers", "GetSnapshot") == 0
			})
		})
	}
}

// At most MaxSnapshotBuilds chunks are encoded at once, however many
// distinct snapshots are requested; every snapshot is still complete and
// its end's count and digest match what was sent (testkit.Snapshot checks).
func TestSnapshotBuildsBounded(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{
		Gateway: gateway.Config{ChunkBytes: 8 << 10, MaxSnapshotBuilds: 2},
	})
	putConfig(t, g, "b/", 300, 4<<10) // 300 chunks a snapshot
	testkit.Snapshot(t, g, "b/")
	encBefore := testkit.Metric(t, g, "confgate_gateway_encodes_total", "snapshot")
	stop := sampleMax(g, "confgate_gateway_snapshot_builds")
	const readers = 12
	var wg sync.WaitGroup
	for i := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			view, _, _ := testkit.Snapshot(t, g, "b/", fmt.Sprintf("r%d/", i))
			if len(view) != 300 {
				t.Errorf("reader %d: %d entries", i, len(view))
			}
		}()
	}
	wg.Wait()
	peak := stop()
	enc := testkit.Metric(t, g, "confgate_gateway_encodes_total", "snapshot") - encBefore
	t.Logf("%d readers: %v chunks encoded, at most %v at once", readers, enc, peak)
	if peak > 2 {
		t.Fatalf("%v snapshot chunks encoded at once, bound 2", peak)
	}
	if enc < readers*100 {
		t.Fatalf("only %v chunks encoded for %d distinct snapshots", enc, readers)
	}
}

// Requests that leave stop building: those waiting for a build slot leave
// without encoding anything, and readers cancelled mid-snapshot stop after
// the chunk at hand. Before, every build ran to completion (200 requests
// cancelled at once still ran 52 full builds).
func TestCancelledSnapshotsStopBuilding(t *testing.T) {
	const (
		readers = 40
		entries = 128 // each its own 32 KiB chunk: 128 chunks a snapshot
	)
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{
		Gateway: gateway.Config{ChunkBytes: 32 << 10, MaxSnapshotBuilds: 2},
	})
	last := putConfig(t, g, "c/", entries, 32<<10)
	testkit.Snapshot(t, g, "c/")
	enc := func() float64 { return testkit.Metric(t, g, "confgate_gateway_encodes_total", "snapshot") }
	streams := func() float64 { return testkit.Metric(t, g, "confgate_gateway_subscribers", "GetSnapshot") }
	cl := testkit.SlowReaderClient(t, g)
	open := func(ctx context.Context, i int) confgatev1.ConfigService_GetSnapshotClient {
		st, err := cl.GetSnapshot(ctx, &confgatev1.GetSnapshotRequest{Selector: sel("c/", fmt.Sprintf("r%d/", i)), MinCursor: last})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	t.Run("waiting for a slot", func(t *testing.T) {
		release := gateway.HoldSnapshotBuilds(g.GW)
		defer func() { release() }()
		before := enc()
		ctx, cancel := context.WithCancel(context.Background())
		for i := range readers {
			open(ctx, i)
		}
		testkit.Eventually(t, 10*time.Second, "every request waiting", func() bool { return streams() == readers })
		cancel()
		testkit.Eventually(t, 10*time.Second, "every request gone", func() bool { return streams() == 0 })
		release()
		release = func() {}
		time.Sleep(100 * time.Millisecond)
		if n := enc() - before; n != 0 {
			t.Fatalf("%v chunks encoded for requests cancelled while waiting for a slot", n)
		}
		// And one whose deadline passes while waiting gets its status.
		hold := gateway.HoldSnapshotBuilds(g.GW)
		dctx, dcancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer dcancel()
		st := open(dctx, 0)
		_, err := st.Recv()
		hold()
		if status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("waiting past the deadline: %v, want DeadlineExceeded", err)
		}
	})

	t.Run("mid-snapshot", func(t *testing.T) {
		before := enc()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var sts []confgatev1.ConfigService_GetSnapshotClient
		for i := range readers {
			sts = append(sts, open(ctx, i))
		}
		for i, st := range sts {
			if m, err := st.Recv(); err != nil || m.GetChunk() == nil {
				t.Fatalf("reader %d: first message %v, %v", i, m, err)
			}
		}
		cancel()
		testkit.Eventually(t, 10*time.Second, "every request gone", func() bool {
			return streams() == 0 && testkit.Metric(t, g, "confgate_gateway_snapshot_builds", "") == 0
		})
		n := enc() - before
		time.Sleep(200 * time.Millisecond)
		if later := enc() - before; later != n {
			t.Fatalf("chunks still encoded after every request left: %v, then %v", n, later)
		}
		t.Logf("%d readers cancelled after their first chunk: %v chunks encoded (full snapshots: %d)", readers, n, readers*entries)
		// Each reader gets ahead by what flow control lets through (its
		// 64 KiB window and grpc's 64 KiB write quota: a few chunks), never
		// by the rest of its snapshot.
		if n > readers*10 {
			t.Fatalf("%v chunks encoded for %d readers cancelled after one chunk", n, readers)
		}
	})
}

// Identical concurrent requests share chunk encodings (through builds in
// flight, and the cache when it holds them), and whatever is shared, the
// bytes are those of a gateway with no cache.
func TestConcurrentSnapshotsShareChunks(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	opts := func(cache int64) testkit.Options {
		return testkit.Options{Gateway: gateway.Config{ChunkBytes: 16 << 10, CacheBytes: cache, MaxSnapshotBuilds: 2}}
	}
	gws := map[string]*testkit.Gateway{
		"cache 64 MiB": testkit.StartGateway(t, k, topic, opts(64<<20)),
		"cache 8 KiB":  testkit.StartGateway(t, k, topic, opts(8<<10)),
		"cache off":    testkit.StartGateway(t, k, topic, opts(0)),
	}
	last := putConfig(t, gws["cache off"], "s/", 200, 2<<10) // ~25 chunks
	ref := func() [][]byte {
		g := gws["cache off"]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := g.Client.Get(ctx, &confgatev1.GetRequest{Key: "s/0000", MinCursor: last}); err != nil {
			t.Fatal(err)
		}
		_, _, raw := testkit.Snapshot(t, g, "s/")
		return raw
	}()
	for _, name := range []string{"cache 64 MiB", "cache 8 KiB", "cache off"} {
		t.Run(name, func(t *testing.T) {
			g := gws[name]
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if _, err := g.Client.Get(ctx, &confgatev1.GetRequest{Key: "s/0000", MinCursor: last}); err != nil {
				t.Fatal(err)
			}
			cancel()
			encBefore := testkit.Metric(t, g, "confgate_gateway_encodes_total", "snapshot")
			const readers = 16
			raws := make([][][]byte, readers)
			var wg sync.WaitGroup
			for i := range readers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _, raws[i] = testkit.Snapshot(t, g, "s/")
				}()
			}
			wg.Wait()
			for i, raw := range raws {
				if !equalFrames(ref, raw) {
					t.Fatalf("reader %d: snapshot bytes differ from the cache-off gateway's", i)
				}
			}
			enc := testkit.Metric(t, g, "confgate_gateway_encodes_total", "snapshot") - encBefore
			t.Logf("%d identical requests of %d chunks: %v chunks encoded", readers, len(ref)-1, enc)
			most := float64(readers * (len(ref) - 1))
			switch {
			case enc > most:
				t.Fatalf("%v chunk encodes for %d identical requests of %d chunks: more than one per chunk per request", enc, readers, len(ref)-1)
			case name != "cache off" && enc >= most:
				// Without a cache, builds are shared only while they
				// overlap in time, which a busy machine may not give
				// (measured: 29 to 462 of 464); with one, never more
				// than a few rounds.
				t.Fatalf("nothing shared: %v chunk encodes for %d identical requests of %d chunks", enc, readers, len(ref)-1)
			}
		})
	}
}

// The delta memo is bounded in bytes across selector groups on a live
// gateway: with distinct selectors and large values the memo stays within
// MemoBytes, drops are counted, every subscriber gets every change, and a
// stalled subscriber that later needs dropped deltas gets the same bytes
// as its group's reading subscriber.
func TestMemoBytesBoundedLive(t *testing.T) {
	const (
		memo   = 1 << 20
		groups = 4
		puts   = 24
	)
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{
		Store:   store.Config{MaxBatchRecords: 1},
		Gateway: gateway.Config{MemoBytes: memo},
	})
	testkit.Put(t, g, "app/seed", "0")
	var streams []*testkit.Stream
	for i := range groups {
		s := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{Selector: sel("app/", fmt.Sprintf("g%d/", i))})
		s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
		streams = append(streams, s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	slow, err := testkit.SlowReaderClient(t, g).Subscribe(ctx, &confgatev1.SubscribeRequest{Selector: sel("app/", "g0/")})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "every snapshot sent", func() bool {
		return testkit.Metric(t, g, "confgate_gateway_snapshots_total", "initial") >= groups+1
	})

	stop := sampleMax(g, "confgate_gateway_memo_bytes")
	var last []byte
	for i := range puts {
		last = testkit.Put(t, g, fmt.Sprintf("app/k%02d", i%10), fmt.Sprintf("%02d", i)+strings.Repeat("m", 100<<10)).Cursor
	}
	for _, s := range streams {
		s.Until(20*time.Second, "every delta", func(s *testkit.Stream) bool { return bytes.Equal(s.Cursor, last) })
	}
	// The stalled subscriber reads now: most of its deltas left the memo.
	var slowDeltas [][]byte
	for done := false; !done; {
		m, err := slow.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if d := m.GetDelta(); d != nil {
			b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
			slowDeltas = append(slowDeltas, b)
			done = bytes.Equal(d.Cursor, last)
		}
		if p := m.GetProgress(); p != nil && bytes.Equal(p.Cursor, last) {
			done = true
		}
	}
	peak := stop()
	dropped := testkit.Metric(t, g, "confgate_gateway_memo_dropped_total", "")
	t.Logf("%d groups x %d puts of 100 KiB (~%d MiB of deltas): memo peaked at %v bytes (bound %d), %v dropped",
		groups, puts, groups*puts*100/1024, peak, memo, dropped)
	if peak > memo {
		t.Fatalf("memo reached %v bytes, bound %d", peak, memo)
	}
	if dropped == 0 {
		t.Fatal("no memo entry dropped")
	}
	want, _, _ := testkit.Snapshot(t, g, "app/")
	for i, s := range streams {
		if s.Puts != puts || !maps.Equal(testkit.Values(s.View), testkit.Values(want)) {
			t.Fatalf("subscriber %d: %d puts, view differs: %v", i, s.Puts, !maps.Equal(testkit.Values(s.View), testkit.Values(want)))
		}
	}
	var fastDeltas [][]byte
	for _, b := range withoutProgress(streams[0].Raw) {
		var m confgatev1.SubscribeResponse
		if proto.Unmarshal(b, &m) == nil && m.GetDelta() != nil {
			fastDeltas = append(fastDeltas, b)
		}
	}
	// The stalled subscriber may get several batches merged into one
	// delta: the changes, in order, and the final cursor are what match.
	fastChanges, fastCursor := flattenDeltas(t, fastDeltas)
	slowChanges, slowCursor := flattenDeltas(t, slowDeltas)
	if !equalFrames(fastChanges, slowChanges) || !bytes.Equal(fastCursor, slowCursor) {
		t.Fatalf("the stalled subscriber's %d changes (in %d deltas) differ from its group's reading subscriber's %d (in %d)", len(slowChanges), len(slowDeltas), len(fastChanges), len(fastDeltas))
	}
}

// flattenDeltas returns the encoded changes of encoded delta messages, in
// order, and the last delta's cursor.
func flattenDeltas(t *testing.T, deltas [][]byte) (changes [][]byte, last []byte) {
	t.Helper()
	for _, b := range deltas {
		var m confgatev1.SubscribeResponse
		if err := proto.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, c := range m.GetDelta().GetChanges() {
			cb, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			changes = append(changes, cb)
		}
		last = m.GetDelta().GetCursor()
	}
	return changes, last
}

// A request waiting for a build slot when the gateway drains ends at once
// with UNAVAILABLE (it resumes on another gateway) instead of waiting.
func TestSnapshotSlotWaitEndsOnDrain(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Gateway: gateway.Config{MaxSnapshotBuilds: 1}})
	testkit.Put(t, g, "d/1", "x")
	release := gateway.HoldSnapshotBuilds(g.GW)
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := g.Client.GetSnapshot(ctx, &confgatev1.GetSnapshotRequest{Selector: sel("d/")})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the request waiting", func() bool {
		return testkit.Metric(t, g, "confgate_gateway_subscribers", "GetSnapshot") == 1
	})
	g.GW.Drain()
	if _, err := st.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("waiting through a drain: %v, want UNAVAILABLE", err)
	}
}
