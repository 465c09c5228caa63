package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

// A snapshot far over gRPC's 4 MiB default arrives in chunks that each fit
// a client with default limits, over Subscribe and GetSnapshot.
func TestSnapshotLargerThan4MiB(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	value := strings.Repeat("x", 100<<10)
	var last *confgatev1.PutResponse
	for i := range 60 { // 6 MB
		last = testkit.Put(t, g, fmt.Sprintf("big/%03d", i), value)
	}
	// A client with gRPC's default 4 MiB receive limit.
	conn, err := grpc.NewClient(g.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl := confgatev1.NewConfigServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	gs, err := cl.GetSnapshot(ctx, &confgatev1.GetSnapshotRequest{Selector: sel("big/"), MinCursor: last.Cursor})
	if err != nil {
		t.Fatal(err)
	}
	var chunks, entries int
	for {
		m, err := gs.Recv()
		if err != nil {
			t.Fatalf("GetSnapshot: %v", err)
		}
		if c := m.GetChunk(); c != nil {
			chunks++
			entries += len(c.Entries)
			if n := proto.Size(m); n > 4<<20 {
				t.Fatalf("chunk of %d bytes exceeds 4 MiB", n)
			}
			continue
		}
		if m.GetEnd().GetEntryCount() != 60 || entries != 60 {
			t.Fatalf("end says %d, got %d entries", m.GetEnd().GetEntryCount(), entries)
		}
		break
	}
	if chunks < 6 {
		t.Fatalf("6 MB arrived in %d chunks; want chunks of at most ~1 MiB", chunks)
	}

	ss, err := cl.Subscribe(ctx, &confgatev1.SubscribeRequest{Selector: sel("big/")})
	if err != nil {
		t.Fatal(err)
	}
	entries = 0
	for {
		m, err := ss.Recv()
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		if c := m.GetSnapshotChunk(); c != nil {
			entries += len(c.Entries)
			continue
		}
		if e := m.GetSnapshotEnd(); e != nil {
			if entries != 60 || e.EntryCount != 60 {
				t.Fatalf("subscribe snapshot: %d entries, end says %d", entries, e.EntryCount)
			}
			break
		}
	}
}

// Invariant 1: the cache is only a cache. Gateways with a large cache, a
// few KiB, and none produce byte-identical snapshots and streams. One
// partition and one record per batch make batching identical everywhere.
func TestCacheBudgetDoesNotChangeBytes(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	opts := func(cache int64) testkit.Options {
		return testkit.Options{
			Store:   store.Config{Partitions: 1, MaxBatchRecords: 1},
			Gateway: gateway.Config{CacheBytes: cache, ChunkBytes: 4 << 10},
		}
	}
	gws := []*testkit.Gateway{
		testkit.StartGateway(t, k, topic, opts(64<<20)),
		testkit.StartGateway(t, k, topic, opts(4<<10)),
		testkit.StartGateway(t, k, topic, opts(0)),
	}
	var last []byte
	for i := range 200 {
		last = testkit.Put(t, gws[i%3], fmt.Sprintf("svc/%d/key%03d", i%4, i), strings.Repeat("v", i*7)).Cursor
	}
	streams := make([]*testkit.Stream, len(gws))
	for i, g := range gws {
		testkit.Snapshot(t, g) // warm the big cache; must not matter
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := g.Client.Get(ctx, &confgatev1.GetRequest{Key: "svc/0/key000", MinCursor: last}); err != nil {
			t.Fatal(err)
		}
		cancel()
		streams[i] = testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{Selector: sel("svc/1/", "svc/2/")})
		// Its snapshot is of this state, before the writes below.
		streams[i].Until(10*time.Second, "the initial snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	}
	var ref [][]byte
	for i, g := range gws {
		_, _, raw := testkit.Snapshot(t, g, "svc/")
		if i == 0 {
			ref = raw
			continue
		}
		if !equalFrames(ref, raw) {
			t.Fatalf("gateway %d: snapshot bytes differ from the cached gateway's", i)
		}
	}
	for i := range 60 {
		if i%5 == 0 {
			testkit.Delete(t, gws[0], fmt.Sprintf("svc/%d/key%03d", i%4, i))
			continue
		}
		last = testkit.Put(t, gws[i%3], fmt.Sprintf("svc/%d/key%03d", i%4, i), "again"+strings.Repeat("!", i)).Cursor
	}
	var refStream [][]byte
	for i, s := range streams {
		s.Until(10*time.Second, "all changes", func(s *testkit.Stream) bool { return bytes.Equal(s.Cursor, last) })
		frames := withoutProgress(s.Raw)
		if len(frames) < 40 {
			t.Fatalf("only %d messages", len(frames))
		}
		if i == 0 {
			refStream = frames
			continue
		}
		if !equalFrames(canonicalStream(t, refStream), canonicalStream(t, frames)) {
			t.Fatalf("gateway %d: stream bytes differ from the cached gateway's", i)
		}
	}
	enc := func(g *testkit.Gateway) float64 {
		return testkit.Metric(t, g, "confgate_gateway_encodes_total", "entry")
	}
	if enc(gws[0]) >= enc(gws[2]) {
		t.Fatalf("cache saved nothing: %v entry encodes with cache, %v without", enc(gws[0]), enc(gws[2]))
	}
}

func withoutProgress(raw [][]byte) [][]byte {
	var out [][]byte
	for _, b := range raw {
		var m confgatev1.SubscribeResponse
		if err := proto.Unmarshal(b, &m); err != nil || m.GetProgress() != nil {
			continue
		}
		out = append(out, b)
	}
	return out
}

// canonicalStream is a stream's messages with its deltas' changes split
// out one by one: a subscriber that is behind gets several batches merged
// into one delta, so where one delta ends depends on timing, but the
// bytes of every change, their order, the snapshots and the cursors that
// end each run of deltas do not.
func canonicalStream(t *testing.T, raw [][]byte) [][]byte {
	t.Helper()
	var out [][]byte
	var cursor []byte
	flush := func() {
		if cursor != nil {
			out = append(out, append([]byte("cursor:"), cursor...))
			cursor = nil
		}
	}
	for _, b := range raw {
		var m confgatev1.SubscribeResponse
		if err := proto.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		d := m.GetDelta()
		if d == nil || d.Coalesced {
			flush()
			out = append(out, b)
			continue
		}
		for _, c := range d.Changes {
			cb, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, cb)
		}
		cursor = d.Cursor
	}
	flush()
	return out
}

func equalFrames(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// A burst of identical snapshot requests encodes the snapshot once.
func TestSnapshotBurstEncodesOnce(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Gateway: gateway.Config{CacheBytes: 64 << 20}})
	for i := range 300 {
		testkit.Put(t, g, fmt.Sprintf("burst/%03d", i), strings.Repeat("b", 500))
	}
	testkit.Snapshot(t, g, "unrelated/") // settle readiness; different selector
	before := testkit.Metric(t, g, "confgate_gateway_encodes_total", "snapshot")
	var wg sync.WaitGroup
	for range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			view, _, _ := testkit.Snapshot(t, g, "burst/")
			if len(view) != 300 {
				t.Errorf("snapshot has %d entries", len(view))
			}
		}()
	}
	wg.Wait()
	if n := testkit.Metric(t, g, "confgate_gateway_encodes_total", "snapshot") - before; n != 1 {
		t.Fatalf("40 identical snapshot requests encoded %v times, want 1", n)
	}
	if n := testkit.Metric(t, g, "confgate_gateway_encodes_total", "entry"); n > 300 {
		t.Fatalf("%v entry encodes for 300 entries", n)
	}
}

// Fan-out encodes each delta once per selector group, not per subscriber.
func TestFanOutEncodesOncePerGroup(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	testkit.Put(t, g, "fan/seed", "0")
	var streams []*testkit.Stream
	for range 25 {
		s := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{Selector: sel("fan/")})
		s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
		streams = append(streams, s)
	}
	before := testkit.Metric(t, g, "confgate_gateway_encodes_total", "delta")
	var last []byte
	for i := range 10 {
		last = testkit.Put(t, g, fmt.Sprintf("fan/%d", i), "v").Cursor
	}
	for _, s := range streams {
		s.Until(10*time.Second, "all deltas", func(s *testkit.Stream) bool { return bytes.Equal(s.Cursor, last) })
		if s.Puts != 10 {
			t.Fatalf("subscriber got %d puts, want 10", s.Puts)
		}
	}
	if n := testkit.Metric(t, g, "confgate_gateway_encodes_total", "delta") - before; n > 10 {
		t.Fatalf("%v delta encodes for 10 changes to 25 subscribers of one selector; want <= 10", n)
	}
}
