package gateway

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/store"
	"github.com/twmb/franz-go/pkg/kfake"
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
