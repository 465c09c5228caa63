package gateway_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/twmb/franz-go/pkg/kgo"
)

func sel(prefixes ...string) *confgatev1.Selector { return &confgatev1.Selector{Prefixes: prefixes} }

// resumeScenario subscribes, applies a first round of writes, disconnects
// and writes a second round (3 puts, 1 delete selected; noise not).
func resumeScenario(t *testing.T, g *testkit.Gateway) (*testkit.Stream, []byte) {
	t.Helper()
	for i := range 10 {
		testkit.Put(t, g, fmt.Sprintf("app/k%d", i), "v1")
	}
	s := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{Selector: sel("app/")})
	s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	r := testkit.Put(t, g, "app/k1", "v2")
	s.Until(10*time.Second, "first delta", func(s *testkit.Stream) bool {
		return string(s.View["app/k1"].GetValue()) == "v2" && string(s.Cursor) == string(r.Cursor)
	})
	s.Close()
	c := s.Cursor
	testkit.Put(t, g, "app/k2", "v2")
	testkit.Put(t, g, "noise/x", "1")
	testkit.Delete(t, g, "app/k3")
	testkit.Put(t, g, "app/new", "v1")
	testkit.Put(t, g, "app/k2", "v3")
	return s, c
}

// resumeDeltas resumes from c on g and reads until old plus what arrives
// equals g's snapshot of app/ once g has applied head: the puts
// ("key=value") and deletes received, and how many deltas were coalesced.
// A snapshot fails the test.
func resumeDeltas(t *testing.T, g *testkit.Gateway, head cursor.Cursor, c []byte, old map[string]*confgatev1.Entry) (puts, dels []string, coalesced int) {
	t.Helper()
	// Writes went through another gateway: wait until this one has them,
	// or its snapshot could be of an earlier state.
	testkit.Eventually(t, 10*time.Second, "the gateway to apply every write", func() bool {
		return g.Store.Status().Cursor.Covers(head)
	})
	_, end, _ := testkit.Snapshot(t, g, "app/")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := g.Client.Subscribe(ctx, &confgatev1.SubscribeRequest{Selector: sel("app/"), ResumeCursor: c})
	if err != nil {
		t.Fatal(err)
	}
	view := maps.Clone(old)
	for string(testkit.DigestOf(view)) != string(end.Digest) {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("stream: %v (puts %v dels %v)", err, puts, dels)
		}
		switch x := m.Message.(type) {
		case *confgatev1.SubscribeResponse_SnapshotChunk, *confgatev1.SubscribeResponse_SnapshotEnd:
			t.Fatalf("gateway %s answered the resume with a snapshot", g.Addr)
		case *confgatev1.SubscribeResponse_Delta:
			if x.Delta.Coalesced {
				coalesced++
			}
			for _, ch := range x.Delta.Changes {
				if p := ch.GetPut(); p != nil {
					puts = append(puts, p.Key+"="+string(p.Value))
					view[p.Key] = p
				} else {
					dels = append(dels, ch.GetDelete().Key)
					delete(view, ch.GetDelete().Key)
				}
			}
		}
	}
	return puts, dels, coalesced
}

func TestResumeYieldsExactlyTheMissedChanges(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	g1 := testkit.StartGateway(t, k, topic, testkit.Options{})
	g2 := testkit.StartGateway(t, k, topic, testkit.Options{})
	old, c := resumeScenario(t, g1)

	head := g1.Store.Status().Cursor
	for _, g := range []*testkit.Gateway{g1, g2} {
		puts, dels, coalesced := resumeDeltas(t, g, head, c, old.View)
		if coalesced != 0 {
			t.Fatal("resume within history sent a coalesced delta")
		}
		want := []string{"app/k2=v2", "app/new=v1", "app/k2=v3"}
		if fmt.Sprint(puts) != fmt.Sprint(want) || fmt.Sprint(dels) != "[app/k3]" {
			t.Fatalf("gateway %s: puts %v dels %v, want puts %v dels [app/k3]", g.Addr, puts, dels, want)
		}
	}
}

// A gateway that started after the cursor read that part of the log while
// bootstrapping. Told not to trust the log's tombstones there
// (NoBootstrapDiffs), it answers with a flagged reset, never a silent gap.
func TestResumeOnGatewayStartedLaterResets(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	g1 := testkit.StartGateway(t, k, topic, testkit.Options{})
	_, c := resumeScenario(t, g1)
	g2 := testkit.StartGateway(t, k, topic, testkit.Options{Store: store.Config{NoBootstrapDiffs: true}})
	s := testkit.Subscribe(t, g2, &confgatev1.SubscribeRequest{Selector: sel("app/"), ResumeCursor: c})
	s.Until(10*time.Second, "reset snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	if e := s.Snapshots[0]; e.Reason != confgatev1.SnapshotReason_SNAPSHOT_REASON_HISTORY_EXPIRED || !e.Reset_ {
		t.Fatalf("reason %v reset %v", e.Reason, e.Reset_)
	}
	if _, ok := s.View["app/k3"]; ok || string(s.View["app/k2"].GetValue()) != "v3" {
		t.Fatalf("wrong state: %v", testkit.Values(s.View))
	}
}

// A gateway that started after the cursor answers it with one coalesced
// delta when the records after the cursor are younger than the topic's
// delete.retention.ms (less a guard): the log still held every tombstone
// after them when it read them. With LogAppendTime the timestamps are the
// broker's; a CreateTime topic works the same on Apache Kafka 4, whose
// brokers bound how far ahead a CreateTime may be (one hour by default).
func TestResumeOnGatewayStartedLaterTrustsYoungTombstones(t *testing.T) {
	k := testkit.StartKafka(t)
	if !k.Real() {
		t.Skip("needs Apache Kafka (CONFGATE_KAFKA_BROKERS): the dev broker neither applies a topic's message.timestamp.type nor bounds CreateTime (message.timestamp.after.max.ms)")
	}
	for _, tsType := range []string{"LogAppendTime", "CreateTime"} {
		t.Run(tsType, func(t *testing.T) {
			topic := testkit.Topic(t)
			k.CreateTopic(t, topic, 6, map[string]string{"cleanup.policy": "compact", "message.timestamp.type": tsType,
				"message.timestamp.after.max.ms": "3600000"}) // Kafka 4's default; unbounded before
			g1 := testkit.StartGateway(t, k, topic, testkit.Options{})
			old, c := resumeScenario(t, g1)
			g2 := testkit.StartGateway(t, k, topic, testkit.Options{})
			puts, dels, coalesced := resumeDeltas(t, g2, g1.Store.Status().Cursor, c, old.View)
			slices.Sort(puts)
			if want := []string{"app/k2=v3", "app/new=v1"}; fmt.Sprint(puts) != fmt.Sprint(want) || fmt.Sprint(dels) != "[app/k3]" || coalesced != 1 {
				t.Fatalf("puts %v dels %v in %d coalesced deltas, want puts %v dels [app/k3] in one", puts, dels, coalesced, want)
			}
			// Counted once the delta is sent, so maybe just after it arrived.
			testkit.Eventually(t, 10*time.Second, "one diff resume counted", func() bool {
				return testkit.Metric(t, g2, "confgate_gateway_resumes_total", "diff") == 1
			})
		})
	}
}

// Records whose timestamps are older than delete.retention.ms are not
// trusted: the cleaner may have removed tombstones among them before the
// gateway read them, so a resume from before them is a reset, while a
// resume from after them, among young records only, is a diff.
func TestResumeOnGatewayStartedLaterDistrustsOldRecords(t *testing.T) {
	k := testkit.StartKafka(t)
	if !k.Real() {
		t.Skip("needs Apache Kafka (CONFGATE_KAFKA_BROKERS): the dev broker does not bound CreateTime (message.timestamp.after.max.ms), so it never trusts, old records or not")
	}
	topic := testkit.Topic(t)
	k.CreateTopic(t, topic, 6, map[string]string{"cleanup.policy": "compact", "message.timestamp.after.max.ms": "3600000"})
	pr := testkit.Producer(t, k, kgo.DefaultProduceTopic(topic))
	twoDaysAgo := time.Now().Add(-48 * time.Hour)
	writeOld := func(key, value string) {
		r := &kgo.Record{Key: []byte(key), Timestamp: twoDaysAgo}
		if value != "" {
			r.Value = []byte(value)
		}
		testkit.Produce(t, pr, r)
	}
	for i := range 5 {
		writeOld(fmt.Sprintf("app/k%d", i), "v1")
	}
	g1 := testkit.StartGateway(t, k, topic, testkit.Options{})
	s := testkit.Subscribe(t, g1, &confgatev1.SubscribeRequest{Selector: sel("app/")})
	s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 && len(s.View) == 5 })
	beforeOld := s.Cursor
	writeOld("app/k1", "v2")
	writeOld("app/k3", "") // a tombstone, old
	s.Until(10*time.Second, "the old writes", func(s *testkit.Stream) bool { return len(s.View) == 4 })
	afterOld, viewAfterOld := s.Cursor, maps.Clone(s.View)
	s.Close()
	testkit.Put(t, g1, "app/k2", "v3")
	testkit.Delete(t, g1, "app/k4")

	g2 := testkit.StartGateway(t, k, topic, testkit.Options{})
	s2 := testkit.Subscribe(t, g2, &confgatev1.SubscribeRequest{Selector: sel("app/"), ResumeCursor: beforeOld})
	s2.Until(10*time.Second, "reset snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	if e := s2.Snapshots[0]; e.Reason != confgatev1.SnapshotReason_SNAPSHOT_REASON_HISTORY_EXPIRED || !e.Reset_ {
		t.Fatalf("before the old records: reason %v reset %v, want a HISTORY_EXPIRED reset", e.Reason, e.Reset_)
	}
	if got := fmt.Sprint(testkit.SortedKeys(s2.View)); got != "[app/k0 app/k1 app/k2]" {
		t.Fatalf("reset to %s", got)
	}
	puts, dels, coalesced := resumeDeltas(t, g2, g1.Store.Status().Cursor, afterOld, viewAfterOld)
	if fmt.Sprint(puts) != "[app/k2=v3]" || fmt.Sprint(dels) != "[app/k4]" || coalesced != 1 {
		t.Fatalf("after the old records: puts %v dels %v in %d coalesced deltas, want [app/k2=v3] [app/k4] in one", puts, dels, coalesced)
	}
}

func TestResumeResetWhenHistoryGone(t *testing.T) {
	k := testkit.StartKafka(t)
	// A two-batch window, and tombstones forgotten at once: the delete
	// below can be reported neither from history nor from the index.
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Store: store.Config{HistoryBatches: 2, TombstoneRetention: time.Nanosecond}})
	_, c := resumeScenario(t, g)
	for i := range 5 {
		testkit.Put(t, g, fmt.Sprintf("pad/%d", i), "x")
	}
	s := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{Selector: sel("app/"), ResumeCursor: c})
	s.Until(10*time.Second, "reset snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	end := s.Snapshots[0]
	if end.Reason != confgatev1.SnapshotReason_SNAPSHOT_REASON_HISTORY_EXPIRED || !end.Reset_ {
		t.Fatalf("reason %v reset %v, want HISTORY_EXPIRED reset", end.Reason, end.Reset_)
	}
	if _, ok := s.View["app/k3"]; ok || string(s.View["app/k2"].GetValue()) != "v3" {
		t.Fatalf("reset snapshot has wrong state: %v", testkit.Values(s.View))
	}
}

func TestResumeFromIndexWhenHistoryGone(t *testing.T) {
	k := testkit.StartKafka(t)
	// A tiny window but tombstones remembered: the resume is answered by
	// one coalesced delta from the index, deletes included.
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Store: store.Config{HistoryBatches: 2}})
	old, c := resumeScenario(t, g)
	for i := range 5 {
		testkit.Put(t, g, fmt.Sprintf("pad/%d", i), "x")
	}
	s := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{Selector: sel("app/"), ResumeCursor: c})
	for k, v := range old.View {
		s.View[k] = v
	}
	m, err := s.Next(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	d := m.GetDelta()
	if d == nil || !d.Coalesced {
		t.Fatalf("want one coalesced delta, got %v", m)
	}
	got := map[string]string{}
	for _, ch := range d.Changes {
		if p := ch.GetPut(); p != nil {
			got[p.Key] = string(p.Value)
		} else {
			got[ch.GetDelete().Key] = "<deleted>"
		}
	}
	want := map[string]string{"app/k2": "v3", "app/new": "v1", "app/k3": "<deleted>"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("coalesced delta %v, want %v", got, want)
	}
	_, end, _ := testkit.Snapshot(t, g, "app/")
	if string(testkit.DigestOf(s.View)) != string(end.Digest) {
		t.Fatal("view after coalesced resume differs from the gateway's state")
	}
}

func TestResumeWithCursorOfAnotherTopicResets(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	testkit.Put(t, g, "a/b", "1")
	other := cursor.Cursor{Topic: cursor.TopicID{1, 2, 3}, Offsets: []int64{5, 5, 5, 5, 5, 5}}
	s := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{ResumeCursor: other.Encode()})
	s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	if e := s.Snapshots[0]; e.Reason != confgatev1.SnapshotReason_SNAPSHOT_REASON_TOPIC_CHANGED || !e.Reset_ {
		t.Fatalf("reason %v reset %v", e.Reason, e.Reset_)
	}
	if string(s.View["a/b"].GetValue()) != "1" {
		t.Fatal("reset snapshot lacks the state")
	}
}

// A resume cursor past the end of the topic's log (the log was truncated
// after the client read it: an unclean leader election, a restore) names
// records that are gone: waiting is pointless, the subscriber is reset.
// A lagging gateway, whose log does hold the cursor, answers UNAVAILABLE
// instead (TestResumeOnLaggingGateway).
func TestResumeBeyondTheLogResets(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Gateway: gatewayWait(300 * time.Millisecond)})
	r := testkit.Put(t, g, "a/b", "1")
	c, _ := cursor.Decode(r.Cursor)
	for p := range c.Offsets {
		c.Offsets[p] += 1000 // a position the log does not have
	}
	s := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{ResumeCursor: c.Encode()})
	s.Until(10*time.Second, "a reset", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	end := s.Snapshots[0]
	if !end.Reset_ || end.Reason != confgatev1.SnapshotReason_SNAPSHOT_REASON_STATE_REBUILT {
		t.Fatalf("reason %v reset %v, want a STATE_REBUILT reset", end.Reason, end.Reset_)
	}
	if got, _ := cursor.Decode(end.Cursor); !got.Equal(g.Store.Status().Cursor) || string(s.View["a/b"].GetValue()) != "1" {
		t.Fatalf("reset to %v with %d keys, want the gateway's state at %v", got, len(s.View), g.Store.Status().Cursor)
	}
	if n := testkit.Metric(t, g, "confgate_gateway_resumes_total", "reset"); n != 1 {
		t.Errorf("resets = %v, want 1", n)
	}
	// Deltas follow the reset.
	testkit.Put(t, g, "a/c", "2")
	s.Until(10*time.Second, "a delta after the reset", func(s *testkit.Stream) bool { return s.View["a/c"] != nil })
}
