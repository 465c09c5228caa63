package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/history"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
)

// Invariant 6: a subscriber that stops reading hurts only itself. Its
// pending changes are coalesced per key when it reads again, and the
// final state is exact; a subscriber reading along gets every change.
func TestSlowSubscriberIsCoalesced(t *testing.T) {
	k := testkit.StartKafka(t)
	topicName := testkit.Topic(t)
	g := testkit.StartGateway(t, k, topicName, testkit.Options{
		Store: store.Config{MaxBatchRecords: 1},
		// The stalled reader falls ~300 batches behind; a reading one
		// starved of CPU under -race must stay well inside the bound.
		Gateway: gateway.Config{MaxPendingBatches: 64, MaxCoalescedBytes: 3 << 20},
	})
	for i := range 10 {
		testkit.Put(t, g, fmt.Sprintf("hot/%d", i), "0")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	slow, err := testkit.SlowReaderClient(t, g).Subscribe(ctx, &confgatev1.SubscribeRequest{Selector: sel("hot/")})
	if err != nil {
		t.Fatal(err)
	}
	fast := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{Selector: sel("hot/")})
	// Both snapshots are taken before the writes start, so the reading
	// subscriber must get every write as a delta.
	fast.Until(10*time.Second, "the fast reader's snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	testkit.Eventually(t, 10*time.Second, "both streams open", func() bool {
		return testkit.Metric(t, g, "confgate_gateway_snapshots_total", "initial") >= 2
	})

	// 10 keys rewritten 30 times with 16 KiB values: ~5 MB, far more than
	// the slow stream's window.
	value := strings.Repeat("z", 16<<10)
	var last []byte
	writes := 0
	for round := range 30 {
		for i := range 10 {
			last = testkit.Put(t, g, fmt.Sprintf("hot/%d", i), fmt.Sprintf("%02d%s", round, value)).Cursor
			writes++
		}
	}
	fast.Until(20*time.Second, "the fast reader to get everything", func(s *testkit.Stream) bool { return bytes.Equal(s.Cursor, last) })
	if fast.Puts != writes {
		t.Fatalf("fast reader got %d puts, want every one of %d", fast.Puts, writes)
	}

	rec := history.NewRecorder()
	audit := rec.Client("slow", []string{"hot/"})
	view := map[string]*confgatev1.Entry{}
	var coalesced, puts int
	var pending map[string]*confgatev1.Entry
	for {
		m, err := slow.Recv()
		if err != nil {
			t.Fatal(err)
		}
		audit.ObserveProto(m)
		switch x := m.Message.(type) {
		case *confgatev1.SubscribeResponse_SnapshotChunk:
			if pending == nil {
				pending = map[string]*confgatev1.Entry{}
			}
			for _, e := range x.SnapshotChunk.Entries {
				pending[e.Key] = e
			}
		case *confgatev1.SubscribeResponse_SnapshotEnd:
			view, pending = pending, nil
			if view == nil {
				view = map[string]*confgatev1.Entry{}
			}
		case *confgatev1.SubscribeResponse_Delta:
			if x.Delta.Coalesced {
				coalesced++
			}
			for _, c := range x.Delta.Changes {
				view[c.GetPut().Key] = c.GetPut()
				puts++
			}
			if bytes.Equal(x.Delta.Cursor, last) {
				goto done
			}
		}
	}
done:
	if coalesced == 0 {
		t.Fatal("the slow reader was never coalesced")
	}
	if puts >= writes {
		t.Fatalf("slow reader got %d puts for %d writes: nothing was coalesced away", puts, writes)
	}
	if !bytes.Equal(testkit.DigestOf(view), testkit.DigestOf(fast.View)) {
		t.Fatal("slow reader's final state differs from the fast reader's")
	}
	for i := range 10 {
		if v := string(view[fmt.Sprintf("hot/%d", i)].GetValue()); !strings.HasPrefix(v, "29") {
			t.Fatalf("hot/%d has an old value %.4q...", i, v)
		}
	}
	// The checker agrees with the topic's log: coalesced deltas carry the
	// latest of each key changed, nothing older, nothing missing.
	topic := g.Store.Status().Topic
	if err := rec.Check(k.ReadLog(t, topicName), topic); err != nil {
		t.Fatalf("history check of the slow reader: %v", err)
	}
	t.Logf("%d writes: fast reader got %d puts, slow reader %d puts in %d coalesced deltas", writes, fast.Puts, puts, coalesced)
}

// Past the coalescing bound a slow reader is re-snapshotted, flagged.
func TestSlowSubscriberPastBoundIsResnapshotted(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{
		Store:   store.Config{MaxBatchRecords: 1},
		Gateway: gateway.Config{MaxPendingBatches: 4, MaxCoalescedBytes: 64 << 10},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	slow, err := testkit.SlowReaderClient(t, g).Subscribe(ctx, &confgatev1.SubscribeRequest{Selector: sel("wide/")})
	if err != nil {
		t.Fatal(err)
	}
	value := strings.Repeat("w", 8<<10)
	var last []byte
	for i := range 200 { // 200 distinct keys: coalescing cannot shrink it under 64 KiB
		last = testkit.Put(t, g, fmt.Sprintf("wide/%03d", i), value).Cursor
	}
	for {
		m, err := slow.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if e := m.GetSnapshotEnd(); e != nil && e.Reset_ {
			if e.Reason != confgatev1.SnapshotReason_SNAPSHOT_REASON_SLOW_SUBSCRIBER {
				t.Fatalf("reason %v", e.Reason)
			}
			return
		}
		if d := m.GetDelta(); d != nil && bytes.Equal(d.Cursor, last) {
			t.Fatal("reached the end without a re-snapshot")
		}
	}
}
