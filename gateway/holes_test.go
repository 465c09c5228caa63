package gateway_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
)

// A resume answered from the index whose diff is over the coalescing bound
// gets a reset snapshot (HISTORY_EXPIRED), never progress at the head,
// which would be a silent gap; a diff under the bound is one coalesced
// delta (the positive control, same set-up).
func TestResumeFromIndexOverTheBoundResets(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{
		Store:   store.Config{HistoryBatches: 2},
		Gateway: gateway.Config{MaxCoalescedBytes: 4 << 10},
	})
	first := testkit.Put(t, g, "app/first", "1")
	big := strings.Repeat("v", 1<<10)
	for i := range 8 { // 8 KiB after first: over the 4 KiB bound
		testkit.Put(t, g, fmt.Sprintf("app/big/%d", i), big)
	}
	small := testkit.Put(t, g, "app/small/0", "x")
	testkit.Put(t, g, "app/small/1", "y")
	for i := range 3 { // push both cursors out of the 2-batch window
		testkit.Put(t, g, fmt.Sprintf("pad/%d", i), "x")
	}

	over := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{Selector: sel("app/"), ResumeCursor: first.Cursor})
	m, err := over.Next(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if m.GetSnapshotChunk() == nil && m.GetSnapshotEnd() == nil {
		t.Fatalf("resume with a diff over the bound: first message %v, want a reset snapshot", m)
	}
	over.Until(10*time.Second, "the snapshot end", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	if e := over.Snapshots[0]; !e.Reset_ || e.Reason != confgatev1.SnapshotReason_SNAPSHOT_REASON_HISTORY_EXPIRED || e.EntryCount != 11 {
		t.Fatalf("snapshot reset=%v reason=%v entries=%d, want a HISTORY_EXPIRED reset of 11 entries", e.Reset_, e.Reason, e.EntryCount)
	}

	under := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{Selector: sel("app/small/"), ResumeCursor: small.Cursor})
	m, err = under.Next(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if d := m.GetDelta(); d == nil || !d.Coalesced || len(d.Changes) != 1 || d.Changes[0].GetPut().GetKey() != "app/small/1" {
		t.Fatalf("resume with a small diff: %v, want one coalesced delta with app/small/1", m)
	}
}

// waitSource is a store whose writes land at once but which applies them
// only when told to.
type waitSource struct {
	*fakeSource
	waiting chan struct{} // receives when WaitApplied is called
	release chan struct{} // closed to let WaitApplied return
}

func (w *waitSource) Produce(context.Context, store.Write) (int32, int64, cursor.Cursor, error) {
	return 0, 4, cursor.Cursor{Topic: w.topic, Offsets: []int64{5}}, nil
}

func (w *waitSource) WaitApplied(ctx context.Context, c cursor.Cursor) error {
	w.waiting <- struct{}{}
	select {
	case <-w.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// wait_applied makes a write answer only once this gateway applied it;
// without it the write answers at once. Deterministic: the source applies
// only when the test says so.
func TestWriteWaitApplied(t *testing.T) {
	topic := cursor.TopicID{7}
	c := cursor.Cursor{Topic: topic, Offsets: []int64{1}}
	src := &waitSource{
		fakeSource: &fakeSource{topic: topic, batches: []*store.Batch{{Seq: 1, End: c, EndBytes: c.Encode()}}},
		waiting:    make(chan struct{}, 1),
		release:    make(chan struct{}),
	}
	gw, err := gateway.New(gateway.Config{Source: src, WaitTimeout: time.Minute, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	client := serveFake(t, gw)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if _, err := client.Put(ctx, &confgatev1.PutRequest{Key: "a", Value: []byte("1")}); err != nil {
		t.Fatalf("put without wait: %v", err)
	}
	select {
	case <-src.waiting:
		t.Fatal("a put without wait_applied waited for the write to be applied")
	default:
	}

	answered := make(chan error, 1)
	go func() {
		_, err := client.Put(ctx, &confgatev1.PutRequest{Key: "a", Value: []byte("2"), WaitApplied: true})
		answered <- err
	}()
	select {
	case <-src.waiting:
	case err := <-answered:
		t.Fatalf("put with wait_applied answered (%v) without waiting for the write to be applied", err)
	case <-ctx.Done():
		t.Fatal("put with wait_applied never waited")
	}
	select {
	case err := <-answered:
		t.Fatalf("put with wait_applied answered (%v) before the write was applied", err)
	default:
	}
	close(src.release)
	if err := <-answered; err != nil {
		t.Fatalf("put with wait_applied: %v", err)
	}
}

// Changes inside one batch reach subscribers in log order, on both paths
// that encode deltas: the resume path (changes below the cursor filtered)
// and the shared per-selector path. The same key twice in one batch makes
// any reordering visible in the final value too.
func TestChangesInsideABatchKeepLogOrder(t *testing.T) {
	topic := cursor.TopicID{7}
	put := func(key, value string, off int64) *store.Entry {
		return &store.Entry{Key: key, Value: []byte(value), Offset: off}
	}
	mk := func(seq uint64, end int64, changes ...*store.Entry) *store.Batch {
		c := cursor.Cursor{Topic: topic, Offsets: []int64{end}}
		return &store.Batch{Seq: seq, Changes: changes, End: c, EndBytes: c.Encode()}
	}
	src := &fakeSource{topic: topic, batches: []*store.Batch{
		mk(1, 1, put("z", "0", 0)),
		mk(2, 5, put("b", "1", 1), put("a", "1", 2), put("b", "2", 3), put("c", "1", 4)), // resume path
		mk(3, 9, put("c", "2", 5), put("a", "2", 6), put("a", "3", 7), put("b", "3", 8)), // shared path
	}}
	gw, err := gateway.New(gateway.Config{Source: src, ProgressInterval: time.Hour, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	client := serveFake(t, gw)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := client.Subscribe(ctx, &confgatev1.SubscribeRequest{ResumeCursor: src.batches[0].EndBytes})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	view := map[string]string{}
	for len(got) < 8 {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		for _, ch := range m.GetDelta().GetChanges() {
			p := ch.GetPut()
			got = append(got, fmt.Sprintf("%s=%s@%d", p.Key, p.Value, p.Version.Offset))
			view[p.Key] = string(p.Value)
		}
	}
	want := "[b=1@1 a=1@2 b=2@3 c=1@4 c=2@5 a=2@6 a=3@7 b=3@8]"
	if fmt.Sprint(got) != want {
		t.Fatalf("changes %v, want log order %s", got, want)
	}
	if fmt.Sprint(view) != "map[a:3 b:3 c:2]" {
		t.Fatalf("view %v, want the latest of each key", view)
	}
}
