package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/twmb/franz-go/pkg/kfake"
	"google.golang.org/protobuf/proto"
)

// Tests written for mutants of snapshot.go that lived (docs/testing.md,
// "Mutation score").

// A cached chunk costs its strings, its frame's capacity and 128 bytes
// of overhead.
func TestSnapChunkCost(t *testing.T) {
	for _, tc := range []struct {
		c    snapChunk
		want int64
	}{
		{snapChunk{key: "sel|1|0", next: "k9", last: true}, 7 + 0 + 2 + 128},
		{snapChunk{key: "sel|1|1", after: "k9", next: "k99", f: &frame{b: make([]byte, 5, 300)}}, 7 + 2 + 3 + 128 + 300},
	} {
		if got := tc.c.cost(); got != tc.want {
			t.Fatalf("cost of %+v: %d, want %d", tc.c, got, tc.want)
		}
	}
}

// mutStore is a store on a fresh dev broker holding puts (key, value,
// alternately), for tests that need a real store.Snapshot.
func mutStore(t *testing.T, kv ...string) *store.Store {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithCancel(context.Background())
	st, err := store.New(store.Config{Brokers: c.ListenAddrs(), Topic: "cfg", CreateTopic: true,
		FetchMaxWait: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = st.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	defer wcancel()
	if err := st.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	var last cursor.Cursor
	for i := 0; i+1 < len(kv); i += 2 {
		_, _, c, err := st.Produce(wctx, store.Write{Key: kv[i], Value: []byte(kv[i+1])})
		if err != nil {
			t.Fatal(err)
		}
		last = c
	}
	if err := st.WaitApplied(wctx, last); err != nil {
		t.Fatal(err)
	}
	return st
}

// doneHook is a context that runs hook the first time Done is called.
type doneHook struct {
	context.Context
	once sync.Once
	hook func()
}

func (d *doneHook) Done() <-chan struct{} {
	d.once.Do(d.hook)
	return d.Context.Done()
}

// A request waiting for an identical request's build of a chunk, whose
// builder left without a result (cancelled, failed), tries again and
// builds the chunk itself.
func TestSnapshotWaiterOfAnAbandonedBuild(t *testing.T) {
	st := mutStore(t, "a/1", "one", "a/2", "two")
	snap, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{Source: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	sel := mustSelector(t, "a/")
	r := &snapReader{g: g, snap: snap, sel: sel, selKey: sel.Key()}
	defer r.close()
	k := chunkCacheKey(r.selKey, snap.Seq, 0)
	// The other request's build, already over without a result: it is
	// forgotten once this request waits on it (its builder's deferred
	// cleanup, done here from the waiter's select).
	abandoned := &snapBuild{done: make(chan struct{})}
	close(abandoned.done)
	g.builds[k] = abandoned
	ctx := &doneHook{Context: context.Background(), hook: func() {
		g.buildMu.Lock()
		delete(g.builds, k)
		g.buildMu.Unlock()
	}}
	c, err := r.chunk(ctx, 0, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.count != 2 || !c.last || c.after != "" || c.next != "a/2" {
		t.Fatalf("chunk %+v, want both entries, last", c)
	}
	if got := counterValue(t, g.m.encSnapshot); got != 1 {
		t.Fatalf("%v chunk encodes, want 1 (this request's own)", got)
	}
}

// snapChunks streams sel's snapshot on a fresh gateway with the given
// chunk size and returns the keys of each chunk sent, and the result.
func snapChunks(t *testing.T, st *store.Store, chunk int, sel keyspace.Selector) ([]string, snapshotResult) {
	t.Helper()
	g, err := New(Config{Source: st, ChunkBytes: chunk, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var chunks []string
	res, err := g.streamSnapshot(context.Background(), snap, sel, func(f *frame) error {
		var resp confgatev1.SubscribeResponse
		if err := proto.Unmarshal(f.b, &resp); err != nil {
			return err
		}
		var keys []string
		for _, e := range resp.GetSnapshotChunk().GetEntries() {
			keys = append(keys, e.Key)
		}
		chunks = append(chunks, strings.Join(keys, " "))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return chunks, res
}

// A snapshot chunk takes entries while they fit ChunkBytes: exactly
// ChunkBytes fits, one byte less does not, an entry larger than a chunk
// is a chunk of its own, and no chunk is empty. Every entry is sent once,
// in key order, and counted.
func TestSnapshotChunkBoundaries(t *testing.T) {
	st := mutStore(t, "a/1", "v1", "a/2", "v2", "a/3", "v3", "a/4", "v4", "b/1", "v5")
	snap, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{Source: st, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	keys := []string{"a/1", "a/2", "a/3", "a/4"}
	var sizes []int
	for _, k := range keys {
		e, _ := snap.Get(k)
		eb, ok := g.encoded(e)
		if !ok {
			t.Fatal("cannot encode")
		}
		sizes = append(sizes, fieldSize(len(eb)))
	}
	// greedy is the expected cut: entries while they fit, at least one.
	greedy := func(chunk int) []string {
		var out []string
		for i := 0; i < len(keys); {
			n, j := sizes[i], i+1
			for j < len(keys) && n+sizes[j] <= chunk {
				n += sizes[j]
				j++
			}
			out = append(out, strings.Join(keys[i:j], " "))
			i = j
		}
		return out
	}
	total := sizes[0] + sizes[1] + sizes[2] + sizes[3]
	sel := mustSelector(t, "a/")
	for _, tc := range []struct {
		name  string
		chunk int
		want  []string
	}{
		{"all fit", 1 << 20, []string{"a/1 a/2 a/3 a/4"}},
		{"exactly all", total, []string{"a/1 a/2 a/3 a/4"}},
		{"one byte short of all", total - 1, []string{"a/1 a/2 a/3", "a/4"}},
		{"exactly the first two", sizes[0] + sizes[1], greedy(sizes[0] + sizes[1])},
		{"one byte short of the first two", sizes[0] + sizes[1] - 1, greedy(sizes[0] + sizes[1] - 1)},
		{"each larger than a chunk", min(sizes[0], sizes[1], sizes[2], sizes[3]) - 1, []string{"a/1", "a/2", "a/3", "a/4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, res := snapChunks(t, st, tc.chunk, sel)
			if strings.Join(got, "|") != strings.Join(tc.want, "|") {
				t.Fatalf("chunks %q, want %q", got, tc.want)
			}
			if res.count != 4 {
				t.Fatalf("count %d, want 4", res.count)
			}
		})
	}
}

// A selector with nothing under it gets no chunk at all, only the end.
func TestSnapshotOfNothingSendsNoChunk(t *testing.T) {
	st := mutStore(t, "a/1", "v1")
	got, res := snapChunks(t, st, 1<<20, mustSelector(t, "z/"))
	if len(got) != 0 || res.count != 0 {
		t.Fatalf("chunks %q, count %d; want none", got, res.count)
	}
}

// A request that encoded chunk 0 itself and took chunk 1 from the cache
// (built by another request) encodes chunk 2 starting after chunk 1's
// last key: the entry it had pulled for chunk 1 is not sent again.
func TestSnapshotOwnChunkAfterACachedOne(t *testing.T) {
	st := mutStore(t, "a/1", "v1", "a/2", "v2", "a/3", "v3")
	snap, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	g, err := New(Config{Source: st, ChunkBytes: 1, CacheBytes: DefaultCacheBytes, Logger: slog.New(slog.DiscardHandler)}) // one entry per chunk
	if err != nil {
		t.Fatal(err)
	}
	sel := mustSelector(t, "a/")
	ctx := context.Background()
	other := &snapReader{g: g, snap: snap, sel: sel, selKey: sel.Key()}
	defer other.close()
	c1, err := other.encode(ctx, chunkCacheKey(other.selKey, snap.Seq, 1), "a/1")
	if err != nil {
		t.Fatal(err)
	}
	g.cache.putChunk(c1)

	r := &snapReader{g: g, snap: snap, sel: sel, selKey: sel.Key()}
	defer r.close()
	var got []string
	after := ""
	for i := 0; i < 3; i++ {
		c, err := r.chunk(ctx, i, after)
		if err != nil {
			t.Fatal(err)
		}
		var resp confgatev1.SubscribeResponse
		if err := proto.Unmarshal(c.f.b, &resp); err != nil {
			t.Fatal(err)
		}
		for _, e := range resp.GetSnapshotChunk().GetEntries() {
			got = append(got, e.Key)
		}
		after = c.next
	}
	if want := "a/1 a/2 a/3"; strings.Join(got, " ") != want {
		t.Fatalf("sent %q, want %q", got, want)
	}
	if hits := counterValue(t, g.m.hitSnapshot); hits != 1 {
		t.Fatalf("%v chunk cache hits, want 1 (chunk 1)", hits)
	}
}

// A resume older than the change window, with every delete since still
// remembered, is one coalesced delta of what changed at or after the
// client's cursor, and nothing else (no snapshot after it).
func TestResumeDiffIsOneDelta(t *testing.T) {
	st := mutStore(t, "a/1", "v1", "a/2", "v2", "b/1", "v3")
	snap, err := st.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Every entry is at or after the zero cursor: all of a/ changed.
	from := cursor.Cursor{Topic: snap.Cursor.Topic, Offsets: make([]int64, len(snap.Cursor.Offsets))}
	src := &memSource{resume: store.Resume{Kind: store.ResumeDiff, Seq: snap.Seq, Snap: snap}, snapErr: errNoSnapshot}
	s, rec := newMutSub(t, src, Config{}, "a/")
	if err := s.resume(context.Background(), from); err != nil {
		t.Fatalf("resume: %v (sent %q)", err, describe(t, rec.msgs))
	}
	want := "delta a/1=v1,a/2=v2 coalesced @" + fmt.Sprint(snap.Cursor.Offsets)
	if got := describe(t, rec.msgs); len(got) != 1 || got[0] != want {
		t.Fatalf("sent %q, want [%q]", got, want)
	}
	if s.pos != snap.Seq || !s.at.Equal(snap.Cursor) || s.filter != nil {
		t.Fatalf("after the diff: pos %d, at %v; want %d, %v", s.pos, s.at.Offsets, snap.Seq, snap.Cursor.Offsets)
	}
}
