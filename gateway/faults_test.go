package gateway_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

var compact = map[string]string{"cleanup.policy": "compact"}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Readiness on a multi-partition topic filled by another producer: the
// first snapshot after ready holds every record, whatever the partition.
func TestReadyWithEveryPartition(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	k.CreateTopic(t, topic, 8, compact)
	p := testkit.Producer(t, k, kgo.DefaultProduceTopic(topic))
	var recs []*kgo.Record
	for i := range 2000 {
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("r/%04d", i)), Value: []byte("v")})
	}
	testkit.Produce(t, p, recs...)
	g := testkit.StartGateway(t, k, topic, testkit.Options{})
	view, end, _ := testkit.Snapshot(t, g)
	if len(view) != 2000 {
		t.Fatalf("first snapshot after ready has %d of 2000 entries", len(view))
	}
	c, _ := cursor.Decode(end.Cursor)
	if len(c.Offsets) != 8 || c.Sum() != 2000 {
		t.Fatalf("cursor %v: want 8 partitions summing to 2000", c.Offsets)
	}
	for p, off := range c.Offsets {
		if off == 0 {
			t.Fatalf("partition %d empty: keys did not spread", p)
		}
	}
}

// Invariant 2: not ready until caught up, and nothing is served before.
// The dev broker holds every fetch until released.
func TestNotReadyUntilCaughtUp(t *testing.T) {
	k := testkit.StartFake(t)
	topic := testkit.Topic(t)
	k.CreateTopic(t, topic, 6, compact)
	p := testkit.Producer(t, k, kgo.DefaultProduceTopic(topic))
	for i := range 100 {
		testkit.Produce(t, p, &kgo.Record{Key: []byte(fmt.Sprintf("boot/%03d", i)), Value: []byte("v")})
	}
	release := make(chan struct{})
	k.Fake.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.Fake.KeepControl()
		select {
		case <-release:
		default:
			k.Fake.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	g := testkit.StartGateway(t, k, topic, testkit.Options{NoWait: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// Give the store time to try; it must stay not ready while fetches hang.
	testkit.Eventually(t, 5*time.Second, "health to answer", func() bool {
		r, err := healthpb.NewHealthClient(g.Conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err == nil && r.Status == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if g.Store.Ready() {
		t.Fatal("ready before any fetch returned")
	}
	st, err := g.Client.Subscribe(ctx, &confgatev1.SubscribeRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Subscribe while not ready: %v, want UNAVAILABLE", err)
	}
	gs, err := g.Client.GetSnapshot(ctx, &confgatev1.GetSnapshotRequest{})
	if err == nil {
		_, err = gs.Recv()
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("GetSnapshot while not ready: %v, want UNAVAILABLE", err)
	}
	if _, err := g.Client.Get(ctx, &confgatev1.GetRequest{Key: "boot/001"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("Get while not ready: %v", err)
	}
	if code := httpStatus(t, "http://"+g.Admin+"/readyz"); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz = %d while not ready", code)
	}

	close(release)
	if err := g.Store.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	view, _, _ := testkit.Snapshot(t, g)
	if len(view) != 100 {
		t.Fatalf("first snapshot after ready has %d entries, want all 100", len(view))
	}
	testkit.Eventually(t, 5*time.Second, "SERVING", func() bool {
		r, err := healthpb.NewHealthClient(g.Conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "confgate.v1.ConfigService"})
		return err == nil && r.Status == healthpb.HealthCheckResponse_SERVING
	})
	if code := httpStatus(t, "http://"+g.Admin+"/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz = %d when ready", code)
	}
}

// CompactTopicConfigs make the log cleaner run within seconds: segments
// roll every 100ms, any dirt makes a log cleanable, and tombstones may go
// 100ms after their segment was cleaned.
var compactTopicConfigs = map[string]string{
	"segment.ms":                "100",
	"min.cleanable.dirty.ratio": "0.01",
	"delete.retention.ms":       "100",
	"min.compaction.lag.ms":     "0",
	"file.delete.delay.ms":      "100",
}

// Compaction removes superseded records and tombstones; a gateway started
// afterwards holds exactly the state of one that saw the whole history.
func TestCompactionKeepsStateAndDigest(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	cfg := testkit.Options{Store: store.Config{TopicConfigs: compactTopicConfigs}}
	a := testkit.StartGateway(t, k, topic, cfg)
	for v := range 4 {
		for i := range 50 {
			testkit.Put(t, a, fmt.Sprintf("c/%02d", i), fmt.Sprintf("v%d", v))
		}
	}
	for i := range 10 {
		testkit.Delete(t, a, fmt.Sprintf("c/%02d", i*3))
	}
	written := k.CountRecords(t, topic)
	// Appending to every partition rolls each one's active segment, so
	// the segments holding old values and tombstones become cleanable.
	rollKeys := testkit.KeysPerPartition("c/roll/", 6)
	rolls := 0
	k.Compact(t, topic, written, func() {
		rolls++
		for _, key := range rollKeys {
			testkit.Put(t, a, key, fmt.Sprint(rolls))
		}
	})
	last := testkit.Put(t, a, "c/last", "1").Cursor
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _ := cursor.Decode(last)
	b := testkit.StartGateway(t, k, topic, cfg)
	if err := b.Store.WaitApplied(ctx, c); err != nil {
		t.Fatal(err)
	}
	sa, sb := a.Store.Status(), b.Store.Status()
	if !sa.Cursor.Equal(sb.Cursor) {
		t.Fatalf("cursors differ: %s vs %s", sa.Cursor, sb.Cursor)
	}
	want := 40 + 1 + len(rollKeys) // live c/NN, c/last, c/roll/*
	if string(sa.Digest) != string(sb.Digest) || sa.Entries != sb.Entries || sa.Entries != want {
		t.Fatalf("state differs after compaction: %d vs %d entries (want %d)", sa.Entries, sb.Entries, want)
	}
	if n, tombs := k.CountLog(t, topic); tombs != 0 || n >= written {
		t.Fatalf("log not compacted: %d records (%d before), %d tombstones", n, written, tombs)
	}
	if sa.Tombstones != 10 || sb.Tombstones != 0 {
		t.Fatalf("tombstones: first gateway %d (want 10 seen live), fresh one %d (want 0: compacted away)", sa.Tombstones, sb.Tombstones)
	}
	ra, rb := testkit.Metric(t, a, "confgate_store_records_applied_total", ""), testkit.Metric(t, b, "confgate_store_records_applied_total", "")
	if rb >= ra {
		t.Fatalf("compaction removed nothing: fresh gateway applied %v records, first %v", rb, ra)
	}
	t.Logf("first gateway applied %v records, the one started after compaction %v (%d in the log before)", ra, rb, written)
	_, _, rawA := testkit.Snapshot(t, a)
	_, _, rawB := testkit.Snapshot(t, b)
	if !equalFrames(rawA, rawB) {
		t.Fatal("snapshots differ after compaction")
	}
}

// Records not written by confgate: headers are served; malformed ones are
// skipped and counted, never applied, never stall the gateway; aborted
// transactions never become config; a tail of transaction markers does
// not block readiness.
func TestForeignAndMalformedRecords(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	k.CreateTopic(t, topic, 6, compact)
	p := testkit.Producer(t, k, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	owner := func(key string) int32 {
		return int32(kgo.StickyKeyPartitioner(nil).ForTopic(topic).Partition(&kgo.Record{Key: []byte(key)}, 6))
	}
	rec := func(key, value string, part int32, hdrs ...kgo.RecordHeader) *kgo.Record {
		r := &kgo.Record{Value: []byte(value), Partition: part, Headers: hdrs}
		if key != "" {
			r.Key = []byte(key)
		}
		return r
	}
	noKey := 1
	if k.Real() {
		// Apache Kafka itself refuses keyless records on a compacted topic.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := p.ProduceSync(ctx, rec("", "no key", 0)).FirstErr()
		cancel()
		if !errors.Is(err, kerr.InvalidRecord) {
			t.Fatalf("keyless record on a compacted topic: %v, want INVALID_RECORD", err)
		}
		noKey = 0
	} else {
		testkit.Produce(t, p, rec("", "no key", 0))
	}
	testkit.Produce(t, p,
		rec("/leading", "bad key", owner("/leading")),
		rec("mis/routed", "wrong partition", (owner("mis/routed")+1)%6),
		rec("ext/json", `{"a":1}`, owner("ext/json"), kgo.RecordHeader{Key: "content-type", Value: []byte("application/json")}, kgo.RecordHeader{Key: "trace", Value: []byte("abc")}),
	)
	tx := testkit.Producer(t, k, kgo.DefaultProduceTopic(topic), kgo.TransactionalID("confgate-test-tx"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, commit := range []bool{true, false} {
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		key := "tx/aborted"
		if commit {
			key = "tx/committed"
		}
		if err := tx.ProduceSync(ctx, &kgo.Record{Key: []byte(key), Value: []byte("1")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := tx.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	// Started now: partitions end in transaction markers.
	g := testkit.StartGateway(t, k, topic, testkit.Options{})
	r, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: "after/ok", Value: []byte("1"), WaitApplied: true})
	if err != nil {
		t.Fatalf("gateway stalled: %v", err)
	}
	_ = r
	view, _, _ := testkit.Snapshot(t, g)
	want := []string{"after/ok", "ext/json", "tx/committed"}
	if got := testkit.SortedKeys(view); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("keys %v, want %v", got, want)
	}
	e := view["ext/json"]
	if e.ContentType != "application/json" || len(e.Headers) != 2 || e.Headers[1].Key != "trace" || string(e.Headers[1].Value) != "abc" {
		t.Fatalf("headers not served: %+v", e)
	}
	for reason, want := range map[string]float64{"no_key": float64(noKey), "bad_key": 1, "misrouted": 1} {
		if n := testkit.Metric(t, g, "confgate_store_records_skipped_total", reason); n != want {
			t.Errorf("skipped{%s} = %v, want %v", reason, n, want)
		}
	}
	if n := testkit.Metric(t, g, "confgate_store_records_skipped_total", "control"); n < 2 {
		t.Errorf("skipped{control} = %v, want the commit and abort markers", n)
	}
}

// A deleted and recreated topic fences the streams and rebuilds: a
// subscriber gets a reset, never a mix of old and new.
func TestTopicRecreatedResetsSubscribers(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	g := testkit.StartGateway(t, k, topic, testkit.Options{})
	testkit.Put(t, g, "old/a", "1")
	testkit.Put(t, g, "old/b", "1")
	s := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{})
	s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 && len(s.View) == 2 })
	oldCursor, _ := cursor.Decode(s.Cursor)

	k.DeleteTopic(t, topic)
	k.CreateTopic(t, topic, 6, compact)
	testkit.Produce(t, testkit.Producer(t, k, kgo.DefaultProduceTopic(topic)), &kgo.Record{Key: []byte("new/c"), Value: []byte("2")})
	s.Until(60*time.Second, "the new topic's state", func(s *testkit.Stream) bool {
		_, oldA := s.View["old/a"]
		_, newC := s.View["new/c"]
		if oldA && newC {
			t.Fatal("view mixes the old topic's entries with the new one's")
		}
		return newC && !oldA
	})
	last := s.Snapshots[len(s.Snapshots)-1]
	if !last.Reset_ || last.Reason != confgatev1.SnapshotReason_SNAPSHOT_REASON_STATE_REBUILT {
		t.Fatalf("reason %v reset %v, want STATE_REBUILT reset", last.Reason, last.Reset_)
	}
	nc, _ := cursor.Decode(last.Cursor)
	if nc.Topic == oldCursor.Topic {
		t.Fatal("cursor still names the old topic")
	}
	if testkit.Metric(t, g, "confgate_store_rebuilds_total", "") < 1 {
		t.Fatal("rebuild not counted")
	}
	// Writes through the gateway reach the new topic.
	testkit.Put(t, g, "new/d", "3")
	s.Until(30*time.Second, "a write after the rebuild", func(s *testkit.Stream) bool { return s.View["new/d"] != nil })
	// An old cursor now resumes as TOPIC_CHANGED.
	s2 := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{ResumeCursor: oldCursor.Encode()})
	s2.Until(10*time.Second, "reset", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	if s2.Snapshots[0].Reason != confgatev1.SnapshotReason_SNAPSHOT_REASON_TOPIC_CHANGED {
		t.Fatalf("old cursor: reason %v", s2.Snapshots[0].Reason)
	}
}

// Invariant 7: with Kafka away the gateway serves its last state, says it
// is stale, fails writes fast, and catches up when Kafka returns.
func TestKafkaAwayServesLastState(t *testing.T) {
	k := testkit.StartFake(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Store: store.Config{StaleAfter: time.Second, ProduceTimeout: 2 * time.Second}})
	testkit.Put(t, g, "k/a", "1")
	s := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{})
	s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.View) == 1 })

	var down atomic.Bool
	down.Store(true)
	k.Fake.Control(func(kmsg.Request) (kmsg.Response, error, bool) {
		k.Fake.KeepControl()
		if down.Load() {
			return nil, errors.New("broker away"), true
		}
		return nil, nil, false
	})
	s.Until(15*time.Second, "a stale progress", func(s *testkit.Stream) bool { return s.LastProgress != nil && s.LastProgress.Stale })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: "k/b", Value: []byte("2")})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "Kafka") {
		t.Fatalf("put with Kafka away: %v, want UNAVAILABLE naming Kafka", err)
	}
	t.Logf("put with Kafka away failed after %s", time.Since(start))
	view, _, _ := testkit.Snapshot(t, g)
	if len(view) != 1 {
		t.Fatal("last state not served while Kafka is away")
	}
	down.Store(false)
	testkit.Eventually(t, 15*time.Second, "fresh again", func() bool { return !g.Store.Stale() })
	testkit.Put(t, g, "k/b", "2")
	s.Until(15*time.Second, "the write after recovery", func(s *testkit.Stream) bool { return s.View["k/b"] != nil })
}

// Adding partitions moves keys: entries whose records now sit in another
// partition than their key's are skipped as misrouted after the rebuild.
// A cursor made before the change cannot be resumed by replay or diff (it
// would keep those entries), so it gets a STATE_REBUILT reset.
func TestResumeAcrossAddedPartitionsResets(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	k.CreateTopic(t, topic, 2, compact)
	g := testkit.StartGateway(t, k, topic, testkit.Options{})
	for i := range 20 {
		testkit.Put(t, g, fmt.Sprintf("app/k%02d", i), "v")
	}
	s := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{Selector: &confgatev1.Selector{Prefixes: []string{"app/"}}})
	s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 && len(s.View) == 20 })
	old := s.Cursor
	s.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if resp, err := k.Admin(t).CreatePartitions(ctx, 2, topic); err != nil || resp[topic].Err != nil {
		t.Fatalf("add partitions: %v %v", err, resp[topic].Err)
	}
	testkit.Eventually(t, 60*time.Second, "the gateway rebuilt on four partitions", func() bool {
		st := g.Store.Status()
		return st.Ready && len(st.Cursor.Offsets) == 4
	})
	view, _, _ := testkit.Snapshot(t, g, "app/")
	if len(view) == 20 {
		t.Fatal("setup: no key moved to a new partition")
	}
	s2 := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{Selector: &confgatev1.Selector{Prefixes: []string{"app/"}}, ResumeCursor: old})
	s2.Until(10*time.Second, "a reset", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	if e := s2.Snapshots[0]; !e.Reset_ || e.Reason != confgatev1.SnapshotReason_SNAPSHOT_REASON_STATE_REBUILT {
		t.Fatalf("reason %v reset %v, want a STATE_REBUILT reset", e.Reason, e.Reset_)
	}
	if fmt.Sprint(testkit.SortedKeys(s2.View)) != fmt.Sprint(testkit.SortedKeys(view)) {
		t.Fatalf("reset to %v, the gateway holds %v", testkit.SortedKeys(s2.View), testkit.SortedKeys(view))
	}
}
