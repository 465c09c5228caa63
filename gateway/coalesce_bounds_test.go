package gateway_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// countingSource counts the history batches the gateway's streams read.
// The dispatcher, which reads every batch once for all streams to decide
// whom to wake, asks for more at a time than a stream ever does
// (MaxPendingBatches+1): its reads are not counted.
type countingSource struct {
	*store.Store
	streamMax int
	batches   atomic.Int64
}

func (c *countingSource) Since(seq uint64, max int) ([]*store.Batch, error) {
	bs, err := c.Store.Since(seq, max)
	if max <= c.streamMax {
		c.batches.Add(int64(len(bs)))
	}
	return bs, err
}

// coalesceRig is a real store (dev broker, one record per batch) served by
// a gateway over a counting source, and a subscriber on a connection with
// 64 KiB flow-control windows, so it stalls as soon as it stops reading.
type coalesceRig struct {
	src  *countingSource
	st   *store.Store
	slow grpc.ServerStreamingClient[confgatev1.SubscribeResponse]
}

func newCoalesceRig(t *testing.T, maxCoalesced int) *coalesceRig {
	t.Helper()
	k := testkit.StartFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := store.New(store.Config{Brokers: k.Brokers, Topic: "cfg", CreateTopic: true, MaxBatchRecords: 1,
		FetchMaxWait: 50 * time.Millisecond, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = st.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := st.WaitReady(wctx); err != nil {
		t.Fatal(err)
	}
	src := &countingSource{Store: st, streamMax: 5} // MaxPendingBatches+1
	gw, err := gateway.New(gateway.Config{Source: src, MaxPendingBatches: 4, MaxCoalescedBytes: maxCoalesced, ProgressInterval: time.Hour, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); _ = gw.Serve(sctx, lis, nil) }()
	t.Cleanup(func() { stop(); <-served })
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	slow, err := confgatev1.NewConfigServiceClient(conn).Subscribe(ctx, &confgatev1.SubscribeRequest{Selector: sel("big/")})
	if err != nil {
		t.Fatal(err)
	}
	for m, err := slow.Recv(); m.GetSnapshotEnd() == nil; m, err = slow.Recv() {
		if err != nil {
			t.Fatal(err)
		}
	}
	return &coalesceRig{src: src, st: st, slow: slow}
}

// put writes key=value and waits until the store applied it.
func (r *coalesceRig) put(t *testing.T, key, value string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, c, err := r.st.Produce(ctx, store.Write{Key: key, Value: []byte(value)})
	if err == nil {
		err = r.st.WaitApplied(ctx, c)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// The two bounds on a slow subscriber's catch-up, each with a test that
// fails when it alone is removed: the coalesced delta itself never exceeds
// MaxCoalescedBytes (a backlog between one and two times the bound gets a
// snapshot), and collecting the backlog stops once it cannot fit, so the
// work is bounded however far behind the reader is.
func TestCatchUpBounds(t *testing.T) {
	const limit = 8 << 10
	kib := strings.Repeat("v", 1<<10)
	for _, tc := range []struct {
		name    string
		backlog int // 1 KiB puts to distinct keys while the reader is stalled
	}{
		{"backlog between one and two bounds", 12},
		{"backlog far past the bound", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rig := newCoalesceRig(t, limit)
			// A filler delta larger than the reader's window stalls it.
			rig.put(t, "big/filler", strings.Repeat("f", 200<<10))
			time.Sleep(200 * time.Millisecond) // usually the sender blocks on the filler first; the checks below allow for it not to
			before := rig.src.batches.Load()
			for i := range tc.backlog {
				rig.put(t, fmt.Sprintf("big/%03d", i), kib)
			}
			// Read until a snapshot holds everything. Should the stalled
			// sender pick up the filler late (a loaded machine), an extra
			// catch-up may come first: each is bounded on its own.
			catchUps := 0
			for done := false; !done; {
				m, err := rig.slow.Recv()
				if err != nil {
					t.Fatal(err)
				}
				if d := m.GetDelta(); d != nil && d.Coalesced {
					t.Fatalf("coalesced delta of %d changes sent; a backlog over %d bytes must get a snapshot", len(d.Changes), limit)
				}
				if e := m.GetSnapshotEnd(); e != nil {
					if e.Reason != confgatev1.SnapshotReason_SNAPSHOT_REASON_SLOW_SUBSCRIBER || !e.Reset_ {
						t.Fatalf("snapshot reason %v reset %v, want a SLOW_SUBSCRIBER reset", e.Reason, e.Reset_)
					}
					catchUps++
					done = e.EntryCount == uint64(tc.backlog+1)
				}
			}
			// 2 x 8 KiB of 1 KiB changes is 16 batches, read in steps of
			// MaxPendingBatches+1 = 5, plus the loop's own reads.
			if read := rig.src.batches.Load() - before; read > int64(30*catchUps) {
				t.Fatalf("%d catch-ups read %d batches of history; past 2 x MaxCoalescedBytes each must stop reading", catchUps, read)
			}
		})
	}
}
