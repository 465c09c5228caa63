package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

const topic = "config"

var compact = map[string]string{"cleanup.policy": "compact"}

func newCluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// within is a context that ends after d or with the test.
func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// running is a Store with its Run loop.
type running struct {
	*store.Store
	reg  *prometheus.Registry
	done chan struct{} // closed when Run returned
	err  error         // what Run returned, once done is closed
}

// newStore builds a store on the cluster; start runs it. Both stop with the
// test (Run is cancelled and must return, then the store is closed).
func newStore(t *testing.T, c *kfake.Cluster, mod func(*store.Config)) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := store.Config{
		Brokers:       c.ListenAddrs(),
		Topic:         topic,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registerer:    reg,
		ProbeInterval: 200 * time.Millisecond,
		FetchMaxWait:  100 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := store.New(cfg)
	if err != nil {
		t.Fatalf("store.New: %v", err)
	}
	return &running{Store: s, reg: reg, done: make(chan struct{})}
}

func (r *running) start(t *testing.T) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer close(r.done)
		r.err = r.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10s of its context ending")
		}
		r.Close()
	})
	return r
}

func startStore(t *testing.T, c *kfake.Cluster, mod func(*store.Config)) *running {
	t.Helper()
	return newStore(t, c, mod).start(t)
}

func (r *running) waitReady(t *testing.T) {
	t.Helper()
	if err := r.WaitReady(within(t, 10*time.Second)); err != nil {
		t.Fatalf("WaitReady: %v", err)
	}
}

func (r *running) snapshot(t *testing.T) *store.Snapshot {
	t.Helper()
	snap, err := r.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	return snap
}

func (r *running) produce(t *testing.T, w store.Write) (int32, int64, cursor.Cursor) {
	t.Helper()
	p, off, c, err := r.Produce(within(t, 10*time.Second), w)
	if err != nil {
		t.Fatalf("Produce(%q): %v", w.Key, err)
	}
	return p, off, c
}

func (r *running) waitApplied(t *testing.T, c cursor.Cursor) {
	t.Helper()
	if err := r.WaitApplied(within(t, 10*time.Second), c); err != nil {
		t.Fatalf("WaitApplied(%v): %v", c.Offsets, err)
	}
}

// metric reads one gauge or counter from the registry; labels select the
// series. ok is false when no such series exists.
func (r *running) metric(t *testing.T, name string, labels ...string) (v float64, ok bool) {
	t.Helper()
	mfs, err := r.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// eventually polls cond until it holds or 10s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func admin(t *testing.T, c *kfake.Cluster) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

func topicConfig(t *testing.T, adm *kadm.Client, key string) string {
	t.Helper()
	rcs, err := adm.DescribeTopicConfigs(within(t, 10*time.Second), topic)
	if err != nil {
		t.Fatalf("describe configs: %v", err)
	}
	rc, err := rcs.On(topic, nil)
	if err != nil || rc.Err != nil {
		t.Fatalf("describe configs: %v, %v", err, rc.Err)
	}
	for _, c := range rc.Configs {
		if c.Key == key && c.Value != nil {
			return *c.Value
		}
	}
	t.Fatalf("topic has no config %s", key)
	return ""
}

// seed produces records with a plain franz-go client, as any producer
// could. With manual, each record goes to the partition it names.
func seed(t *testing.T, c *kfake.Cluster, manual bool, rs ...*kgo.Record) {
	t.Helper()
	part := kgo.StickyKeyPartitioner(nil) // Kafka's default: murmur2 of the key
	if manual {
		part = kgo.ManualPartitioner()
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(part), kgo.ProducerLinger(0), kgo.ProducerBatchMaxBytes(4<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(within(t, 10*time.Second), rs...).FirstErr(); err != nil {
		t.Fatalf("seed: %v", err)
	}
}

func kv(key, value string) *kgo.Record { return &kgo.Record{Key: []byte(key), Value: []byte(value)} }

func tombstone(key string) *kgo.Record { return &kgo.Record{Key: []byte(key)} }

// partitionOf is the partition Kafka's default partitioner picks for key.
func partitionOf(key string, partitions int) int32 {
	return int32(kgo.StickyKeyPartitioner(nil).ForTopic(topic).Partition(&kgo.Record{Key: []byte(key)}, partitions))
}

// entries renders what a snapshot holds, tombstones included.
func entries(snap *store.Snapshot) []string {
	var out []string
	snap.ScanAll(keyspace.Selector{}, func(e *store.Entry) bool {
		v := fmt.Sprintf("%q", e.Value)
		if e.Deleted {
			v = "deleted"
		}
		out = append(out, fmt.Sprintf("%s=%s@%d:%d", e.Key, v, e.Partition, e.Offset))
		return true
	})
	return out
}

func TestMissingTopic(t *testing.T) {
	c := newCluster(t)
	r := startStore(t, c, nil)
	select {
	case <-r.done:
	case <-within(t, 10*time.Second).Done():
		t.Fatal("Run did not return for a missing topic")
	}
	if !errors.Is(r.err, store.ErrTopicMissing) {
		t.Fatalf("Run = %v, want ErrTopicMissing", r.err)
	}
	for _, hint := range []string{topic, "cleanup.policy=compact", "--create-topic"} {
		if !strings.Contains(r.err.Error(), hint) {
			t.Errorf("error %q does not mention %q", r.err, hint)
		}
	}
	if r.Ready() {
		t.Error("ready without a topic")
	}
	if _, err := r.Snapshot(); !errors.Is(err, store.ErrNotReady) {
		t.Errorf("Snapshot = %v, want ErrNotReady", err)
	}
	td, err := admin(t, c).ListTopics(within(t, 10*time.Second), topic)
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := td[topic]; ok && d.Err == nil {
		t.Error("the store created the topic without CreateTopic")
	}
}

func TestCreateTopic(t *testing.T) {
	c := newCluster(t)
	r := startStore(t, c, func(cfg *store.Config) {
		cfg.CreateTopic = true
		cfg.Partitions = 3
		cfg.TopicConfigs = map[string]string{"segment.ms": "60000"}
	})
	r.waitReady(t)

	adm := admin(t, c)
	if got := topicConfig(t, adm, "cleanup.policy"); got != "compact" {
		t.Errorf("cleanup.policy = %q, want compact", got)
	}
	if got := topicConfig(t, adm, "segment.ms"); got != "60000" {
		t.Errorf("segment.ms = %q, want the configured 60000", got)
	}
	td, err := adm.ListTopics(within(t, 10*time.Second), topic)
	if err != nil || td[topic].Err != nil {
		t.Fatalf("list topic: %v, %v", err, td[topic].Err)
	}
	if n := len(td[topic].Partitions); n != 3 {
		t.Errorf("%d partitions, want 3", n)
	}
	st := r.Status()
	if !st.Ready || st.Topic != cursor.TopicID(td[topic].ID) || !slices.Equal(st.Cursor.Offsets, []int64{0, 0, 0}) || st.Entries != 0 {
		t.Errorf("status %+v, want ready on topic %v at [0 0 0], no entries", st, cursor.TopicID(td[topic].ID))
	}
	if v, ok := r.metric(t, "confgate_store_topic_compacted"); !ok || v != 1 {
		t.Errorf("confgate_store_topic_compacted = %v (present %v), want 1", v, ok)
	}
}

// A topic deleted while the store runs is not recreated by CreateTopic:
// whoever deleted it may be recreating it with settings of their own, and
// the store adopts what they create.
func TestDeletedTopicNotRecreated(t *testing.T) {
	c := newCluster(t)
	r := startStore(t, c, func(cfg *store.Config) {
		cfg.CreateTopic = true
		cfg.Partitions = 3
	})
	r.waitReady(t)
	adm := admin(t, c)
	resp, err := adm.DeleteTopic(within(t, 10*time.Second), topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatalf("delete topic: %v", err)
	}
	eventually(t, "the store to notice the deletion", func() bool {
		v, _ := r.metric(t, "confgate_store_rebuilds_total")
		return v >= 1
	})
	// Several probe intervals (200ms) pass with the topic still absent.
	for range 10 {
		td, err := adm.ListTopics(within(t, 10*time.Second), topic)
		if err != nil {
			t.Fatal(err)
		}
		if d, ok := td[topic]; ok && d.Err == nil {
			t.Fatal("the store recreated a topic deleted while it ran")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := c.CreateTopic(topic, 2, compact); err != nil {
		t.Fatalf("recreate: %v", err)
	}
	eventually(t, "the store to adopt the recreated topic", func() bool {
		st := r.Status()
		return st.Ready && len(st.Cursor.Offsets) == 2
	})
}

func TestNotCompactedTopic(t *testing.T) {
	c := newCluster(t)
	if err := c.CreateTopic(topic, 2, nil); err != nil {
		t.Fatal(err)
	}
	if got := topicConfig(t, admin(t, c), "cleanup.policy"); got != "delete" {
		t.Fatalf("setup: cleanup.policy = %q, want delete", got)
	}
	// Retention there deletes config: refused at start, saying what to do.
	refused := startStore(t, c, nil)
	select {
	case <-refused.done:
		if !errors.Is(refused.err, store.ErrTopicNotCompacted) || !strings.Contains(refused.err.Error(), "cleanup.policy=compact") {
			t.Fatalf("Run = %v, want ErrTopicNotCompacted saying to set cleanup.policy=compact", refused.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run on a topic with cleanup.policy=delete did not fail")
	}

	r := startStore(t, c, func(cfg *store.Config) { cfg.AllowUncompactedTopic = true })
	r.waitReady(t)
	p, off, cur := r.produce(t, store.Write{Key: "app/x", Value: []byte("1")})
	r.waitApplied(t, cur)
	if e, ok := r.snapshot(t).Get("app/x"); !ok || string(e.Value) != "1" || e.Partition != p || e.Offset != off {
		t.Fatalf("Get(app/x) = %+v, %v", e, ok)
	}
	if v, ok := r.metric(t, "confgate_store_ready"); !ok || v != 1 {
		t.Errorf("confgate_store_ready = %v (present %v), want 1", v, ok)
	}
	if v, ok := r.metric(t, "confgate_store_topic_compacted"); !ok || v != 0 {
		t.Errorf("confgate_store_topic_compacted = %v (present %v), want 0", v, ok)
	}
}

func TestReadiness(t *testing.T) {
	t.Run("empty topic", func(t *testing.T) {
		c := newCluster(t)
		if err := c.CreateTopic(topic, 6, compact); err != nil {
			t.Fatal(err)
		}
		r := startStore(t, c, nil)
		r.waitReady(t)
		st := r.Status()
		if !st.Ready || !slices.Equal(st.Cursor.Offsets, make([]int64, 6)) || st.Entries != 0 || st.LagRecords != 0 {
			t.Fatalf("status %+v, want ready at six zero offsets, nothing held", st)
		}
		if got := entries(r.snapshot(t)); len(got) != 0 {
			t.Fatalf("snapshot holds %q", got)
		}
	})

	t.Run("records in some partitions", func(t *testing.T) {
		c := newCluster(t)
		if err := c.CreateTopic(topic, 6, compact); err != nil {
			t.Fatal(err)
		}
		rs := []*kgo.Record{kv("app/a", "1"), kv("app/b", "2"), kv("app/a", "3"), kv("app/c", "x"), tombstone("app/c")}
		seed(t, c, false, rs...)
		want := make([]int64, 6) // next offset per partition
		for _, r := range rs {
			want[r.Partition] = r.Offset + 1
		}
		if !slices.Contains(want, 0) {
			t.Fatalf("setup: every partition got records (%v)", want)
		}

		r := startStore(t, c, nil)
		r.waitReady(t)
		snap := r.snapshot(t)
		wantEntries := []string{
			fmt.Sprintf("app/a=%q@%d:%d", "3", rs[2].Partition, rs[2].Offset),
			fmt.Sprintf("app/b=%q@%d:%d", "2", rs[1].Partition, rs[1].Offset),
			fmt.Sprintf("app/c=deleted@%d:%d", rs[4].Partition, rs[4].Offset),
		}
		if got := entries(snap); !slices.Equal(got, wantEntries) {
			t.Fatalf("snapshot %q, want %q", got, wantEntries)
		}
		if !slices.Equal(snap.Cursor.Offsets, want) {
			t.Errorf("snapshot cursor %v, want %v", snap.Cursor.Offsets, want)
		}
		st := r.Status()
		if st.Entries != 2 || st.Tombstones != 1 || !slices.Equal(st.Cursor.Offsets, want) {
			t.Errorf("status %+v, want 2 entries, 1 tombstone at %v", st, want)
		}
	})

	t.Run("WaitReady honours ctx", func(t *testing.T) {
		c := newCluster(t)
		r := newStore(t, c, nil) // never runs: never ready
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		err := r.WaitReady(ctx)
		if !errors.Is(err, store.ErrNotReady) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitReady = %v, want ErrNotReady and DeadlineExceeded", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("WaitReady returned after %v", d)
		}
		ctx, cancel = context.WithCancel(t.Context())
		cancel()
		if err := r.WaitReady(ctx); !errors.Is(err, store.ErrNotReady) || !errors.Is(err, context.Canceled) {
			t.Errorf("WaitReady(cancelled) = %v, want ErrNotReady and Canceled", err)
		}
		if err := r.WaitApplied(ctx, cursor.Cursor{}); !errors.Is(err, store.ErrNotReady) {
			t.Errorf("WaitApplied before ready = %v, want ErrNotReady", err)
		}
	})
}

func TestProduce(t *testing.T) {
	c := newCluster(t)
	r := startStore(t, c, func(cfg *store.Config) {
		cfg.CreateTopic = true
		cfg.Partitions = 3
	})
	r.waitReady(t)
	topicID := r.Status().Topic
	before := r.snapshot(t)

	p, off, cur := r.produce(t, store.Write{
		Key:         "pay/db/timeout",
		Value:       []byte("5s"),
		ContentType: "text/plain",
		Headers:     []store.Header{{Key: "owner", Value: []byte("pay")}, {Key: store.ContentTypeHeader, Value: []byte("text/plain")}},
	})
	if p != partitionOf("pay/db/timeout", 3) {
		t.Errorf("written to partition %d, the default partitioner says %d", p, partitionOf("pay/db/timeout", 3))
	}
	if cur.Topic != topicID || cur.Offset(p) != off+1 || len(cur.Offsets) != 3 {
		t.Fatalf("cursor %v on %v, want one covering %d:%d on %v", cur.Offsets, cur.Topic, p, off, topicID)
	}
	r.waitApplied(t, cur)
	if st := r.Status(); !st.Cursor.Covers(cur) {
		t.Fatalf("WaitApplied returned at %v, before %v", st.Cursor.Offsets, cur.Offsets)
	}
	e, ok := r.snapshot(t).Get("pay/db/timeout")
	if !ok || string(e.Value) != "5s" || e.Partition != p || e.Offset != off || e.Deleted || e.ContentType != "text/plain" {
		t.Fatalf("Get = %+v, %v", e, ok)
	}
	wantHeaders := []store.Header{{Key: store.ContentTypeHeader, Value: []byte("text/plain")}, {Key: "owner", Value: []byte("pay")}}
	if !slices.EqualFunc(e.Headers, wantHeaders, func(a, b store.Header) bool { return a.Key == b.Key && bytes.Equal(a.Value, b.Value) }) {
		t.Errorf("headers %q, want %q", e.Headers, wantHeaders)
	}
	if g, at, ok, err := r.Get("pay/db/timeout"); err != nil || !ok || g.Offset != off || !at.Covers(cur) {
		t.Errorf("Store.Get = %+v at %v, %v, %v", g, at.Offsets, ok, err)
	}

	t.Run("refused like on read", func(t *testing.T) {
		many := make([]store.Header, store.MaxHeaders+1)
		for i := range many {
			many[i] = store.Header{Key: fmt.Sprint("h", i)}
		}
		for _, tc := range []struct {
			name string
			w    store.Write
			want error
		}{
			{"content type twice", store.Write{Key: "k", ContentType: "a", Headers: []store.Header{{Key: store.ContentTypeHeader, Value: []byte("b")}}}, store.ErrBadHeader},
			{"content type header twice", store.Write{Key: "k", Headers: []store.Header{{Key: store.ContentTypeHeader, Value: []byte("a")}, {Key: store.ContentTypeHeader, Value: []byte("a")}}}, store.ErrBadHeader},
			{"content type header too long", store.Write{Key: "k", Headers: []store.Header{{Key: store.ContentTypeHeader, Value: bytes.Repeat([]byte("x"), store.MaxContentTypeBytes+1)}}}, store.ErrBadHeader},
			{"content type header not UTF-8", store.Write{Key: "k", Headers: []store.Header{{Key: store.ContentTypeHeader, Value: []byte{0xff}}}}, store.ErrBadHeader},
			{"header key not UTF-8", store.Write{Key: "k", Headers: []store.Header{{Key: "\xff"}}}, store.ErrBadHeader},
			{"value too large", store.Write{Key: "k", Value: make([]byte, store.MaxValueBytes+1)}, store.ErrTooLarge},
			{"too many headers", store.Write{Key: "k", Headers: many}, store.ErrTooLarge},
			{"headers too large", store.Write{Key: "k", Headers: []store.Header{{Key: "h", Value: make([]byte, store.MaxHeaderBytes)}}}, store.ErrTooLarge},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if _, _, _, err := r.Produce(within(t, 10*time.Second), tc.w); !errors.Is(err, tc.want) {
					t.Errorf("Produce = %v, want %v", err, tc.want)
				}
			})
		}
	})

	t.Run("empty value is a value", func(t *testing.T) {
		for _, w := range []store.Write{{Key: "pay/flag"}, {Key: "pay/flag2", Value: []byte{}}} {
			_, _, cur := r.produce(t, w)
			r.waitApplied(t, cur)
			e, ok := r.snapshot(t).Get(w.Key)
			if !ok || e.Deleted || len(e.Value) != 0 {
				t.Errorf("Get(%q) = %+v, %v; want a live, empty value", w.Key, e, ok)
			}
		}
	})

	t.Run("delete", func(t *testing.T) {
		p2, off2, cur := r.produce(t, store.Write{Key: "pay/db/timeout", Delete: true, Value: []byte("ignored")})
		if p2 != p || off2 <= off {
			t.Fatalf("delete written at %d:%d, want partition %d after offset %d", p2, off2, p, off)
		}
		r.waitApplied(t, cur)
		snap := r.snapshot(t)
		if e, ok := snap.Get("pay/db/timeout"); ok {
			t.Fatalf("deleted key still live: %+v", e)
		}
		var tomb []*store.Entry
		snap.ScanAll(keyspace.Selector{}, func(e *store.Entry) bool {
			if e.Deleted {
				tomb = append(tomb, e)
			}
			return true
		})
		if len(tomb) != 1 || tomb[0].Key != "pay/db/timeout" || tomb[0].Offset != off2 {
			t.Fatalf("tombstones %+v, want pay/db/timeout at %d", tomb, off2)
		}
		if st := r.Status(); st.Entries != 2 || st.Tombstones != 1 {
			t.Errorf("status: %d entries, %d tombstones; want 2, 1", st.Entries, st.Tombstones)
		}
	})

	t.Run("history since the first snapshot", func(t *testing.T) {
		bs, err := r.Since(before.Seq, 1000)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, b := range bs {
			for _, e := range b.Changes {
				got = append(got, fmt.Sprintf("%s deleted=%v", e.Key, e.Deleted))
			}
		}
		want := []string{"pay/db/timeout deleted=false", "pay/flag deleted=false", "pay/flag2 deleted=false", "pay/db/timeout deleted=true"}
		if !slices.Equal(got, want) {
			t.Fatalf("changes since Seq %d: %q, want %q", before.Seq, got, want)
		}
		if last := bs[len(bs)-1]; !r.Status().Cursor.Equal(last.End) {
			t.Errorf("last batch ends at %v, the store is at %v", last.End.Offsets, r.Status().Cursor.Offsets)
		}
	})

	t.Run("WaitApplied", func(t *testing.T) {
		ahead := r.Status().Cursor
		ahead.Offsets[p] += 100
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if err := r.WaitApplied(ctx, ahead); !errors.Is(err, store.ErrBehind) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitApplied(ahead) = %v, want ErrBehind and DeadlineExceeded", err)
		}
		other := cursor.Cursor{Topic: cursor.TopicID{1, 2, 3}, Offsets: []int64{0}}
		if err := r.WaitApplied(within(t, 10*time.Second), other); !errors.Is(err, store.ErrTopicChanged) {
			t.Errorf("WaitApplied(other topic) = %v, want ErrTopicChanged", err)
		}
	})
}

func TestStoresAgree(t *testing.T) {
	c := newCluster(t)
	a := startStore(t, c, func(cfg *store.Config) {
		cfg.CreateTopic = true
		cfg.Partitions = 4
	})
	a.waitReady(t)

	var last cursor.Cursor
	write := func(w store.Write) {
		t.Helper()
		_, _, last = a.produce(t, w)
		a.waitApplied(t, last) // so the next write's cursor covers this one
	}
	for i := range 8 {
		write(store.Write{Key: fmt.Sprintf("svc/%d", i%5), Value: fmt.Appendf(nil, "v%d", i)})
	}
	write(store.Write{Key: "svc/1", Delete: true})

	// b bootstraps what is there, then tails the rest.
	b := startStore(t, c, nil)
	b.waitReady(t)
	for i := range 6 {
		write(store.Write{Key: fmt.Sprintf("svc/%d", 3+i%4), Value: fmt.Appendf(nil, "w%d", i)})
	}
	write(store.Write{Key: "svc/4", Delete: true})
	write(store.Write{Key: "svc/0", Value: nil})
	b.waitApplied(t, last)

	sa, sb := a.Status(), b.Status()
	if sa.Entries == 0 || sa.Entries != sb.Entries || sa.Tombstones != sb.Tombstones {
		t.Errorf("entries %d/%d, tombstones %d/%d; want equal and non-zero entries", sa.Entries, sb.Entries, sa.Tombstones, sb.Tombstones)
	}
	if !bytes.Equal(sa.Digest, sb.Digest) || bytes.Equal(sa.Digest, make([]byte, len(sa.Digest))) {
		t.Errorf("digests %x and %x, want equal and non-zero", sa.Digest, sb.Digest)
	}
	if !sa.Cursor.Equal(sb.Cursor) || !sa.Cursor.Covers(last) {
		t.Errorf("cursors %v and %v, want equal and covering %v", sa.Cursor.Offsets, sb.Cursor.Offsets, last.Offsets)
	}
	if ea, eb := entries(a.snapshot(t)), entries(b.snapshot(t)); !slices.Equal(ea, eb) {
		t.Errorf("snapshots differ:\n a %q\n b %q", ea, eb)
	}
	for _, s := range []*running{a, b} {
		eventually(t, "no lag", func() bool { return s.Status().LagRecords == 0 })
		if st := s.Status(); !st.Ready || st.Stale {
			t.Errorf("status %+v, want ready and not stale", st)
		}
	}
}

func TestMalformedRecordsSkipped(t *testing.T) {
	c := newCluster(t)
	if err := c.CreateTopic(topic, 3, compact); err != nil {
		t.Fatal(err)
	}
	r := startStore(t, c, nil)
	r.waitReady(t)

	wrong := (partitionOf("app/misrouted", 3) + 1) % 3
	// hdr is a record in its right partition with the given headers.
	hdr := func(key string, value []byte, hs ...kgo.RecordHeader) *kgo.Record {
		return &kgo.Record{Key: []byte(key), Value: value, Headers: hs, Partition: partitionOf(key, 3)}
	}
	ct := func(v string) kgo.RecordHeader {
		return kgo.RecordHeader{Key: store.ContentTypeHeader, Value: []byte(v)}
	}
	many := make([]kgo.RecordHeader, store.MaxHeaders+1)
	for i := range many {
		many[i] = kgo.RecordHeader{Key: fmt.Sprint("h", i)}
	}
	bad := []*kgo.Record{
		{Key: []byte("/bad"), Value: []byte("1"), Partition: 0},
		{Key: []byte("app/misrouted"), Value: []byte("1"), Partition: wrong},
		{Key: nil, Value: []byte("1"), Partition: 1},
		{Key: []byte("a\x00b"), Value: []byte("1"), Partition: 2},
		// Headers no client could decode: protobuf strings must be UTF-8.
		hdr("app/header-key", []byte("1"), kgo.RecordHeader{Key: "\xff\xfe", Value: []byte("x")}),
		hdr("app/content-type", []byte("1"), ct("text/\xc3")),
		hdr("app/content-type-twice", []byte("1"), ct("a"), ct("b")),
		hdr("app/content-type-long", []byte("1"), ct(strings.Repeat("x", store.MaxContentTypeBytes+1))),
		// Deletes are judged by the same rules.
		hdr("app/deleted-bad-header", nil, kgo.RecordHeader{Key: "\x80"}),
		// Too large for every client to receive.
		hdr("app/big", bytes.Repeat([]byte("v"), store.MaxValueBytes+1)),
		hdr("app/many-headers", []byte("1"), many...),
		hdr("app/header-bytes", []byte("1"), kgo.RecordHeader{Key: "h", Value: bytes.Repeat([]byte("v"), store.MaxHeaderBytes)}),
	}
	seed(t, c, true, bad...)
	good := kv("app/ok", "1")
	// At the limits exactly: applied.
	edge := hdr("app/edge", bytes.Repeat([]byte("v"), store.MaxValueBytes), ct(strings.Repeat("x", store.MaxContentTypeBytes)),
		kgo.RecordHeader{Key: "h", Value: bytes.Repeat([]byte("v"), store.MaxHeaderBytes-store.MaxContentTypeBytes-len(store.ContentTypeHeader)-1)})
	seed(t, c, false, good, edge)

	want := cursor.Cursor{Topic: r.Status().Topic, Offsets: make([]int64, 3)}
	for _, rec := range append(bad, good, edge) {
		want.Offsets[rec.Partition] = max(want.Offsets[rec.Partition], rec.Offset+1)
	}
	r.waitApplied(t, want) // skipped records move the cursor too

	snap := r.snapshot(t)
	if e, ok := snap.Get("app/edge"); !ok || len(e.Value) != store.MaxValueBytes || len(e.ContentType) != store.MaxContentTypeBytes {
		t.Errorf("entry at the limits: %v, want it applied", ok)
	}
	var got []string
	snap.ScanAll(keyspace.Selector{}, func(e *store.Entry) bool {
		got = append(got, e.Key)
		return true
	})
	if w := []string{"app/edge", "app/ok"}; !slices.Equal(got, w) {
		t.Fatalf("index holds %q, want %q", got, w)
	}
	for reason, n := range map[string]float64{"bad_key": 2, "misrouted": 1, "no_key": 1, "bad_header": 5, "too_large": 3} {
		if v, _ := r.metric(t, "confgate_store_records_skipped_total", "reason", reason); v != n {
			t.Errorf("skipped{reason=%s} = %v, want %v", reason, v, n)
		}
	}
	if !r.Ready() {
		t.Error("not ready after malformed records")
	}
}

// A partition whose tail is a record the store skips (a malformed record
// here; a transaction marker does the same) still makes the store ready, and
// WaitReady must see it.
func TestReadyWhenTheLastRecordIsSkipped(t *testing.T) {
	c := newCluster(t)
	if err := c.CreateTopic(topic, 1, compact); err != nil {
		t.Fatal(err)
	}
	seed(t, c, false, kv("/bad", "1"))

	r := newStore(t, c, nil)
	ctx := within(t, 10*time.Second)
	waited := make(chan error, 1)
	go func() { waited <- r.WaitReady(ctx) }()
	r.start(t)
	eventually(t, "Ready()", r.Ready)
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("WaitReady = %v although Ready() is true", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitReady still blocked although Ready() is true: becoming ready must notify waiters")
	}
}

func TestCheckInLog(t *testing.T) {
	c := newCluster(t)
	r := startStore(t, c, func(cfg *store.Config) {
		cfg.CreateTopic = true
		cfg.Partitions = 2
	})
	r.waitReady(t)
	_, _, at := r.produce(t, store.Write{Key: "app/x", Value: []byte("1")})
	r.waitApplied(t, at)
	past := func(p int, by int64) cursor.Cursor {
		c := at.Clone()
		for len(c.Offsets) <= p {
			c.Offsets = append(c.Offsets, 0)
		}
		c.Offsets[p] += by
		return c
	}
	other := at.Clone()
	other.Topic[0] ^= 0xff
	tests := []struct {
		name   string
		c      cursor.Cursor
		beyond string // "" for nil
	}{
		{"the log's end", at, ""},
		{"the start", cursor.Cursor{Topic: at.Topic}, ""},
		{"past partition 0", past(0, 1), "partition 0 ends at offset"},
		{"past partition 1", past(1, 5), "partition 1 ends at offset"},
		{"a partition the topic lacks", past(2, 1), "partition 2 does not exist"},
		{"another topic", cursor.Cursor{Topic: other.Topic, Offsets: []int64{99, 99}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := r.CheckInLog(within(t, 10*time.Second), tt.c)
			switch {
			case tt.beyond == "" && err != nil:
				t.Fatalf("CheckInLog = %v, want nil", err)
			case tt.beyond != "" && (!errors.Is(err, store.ErrBeyondLog) || !strings.Contains(err.Error(), tt.beyond)):
				t.Fatalf("CheckInLog = %v, want ErrBeyondLog saying %q", err, tt.beyond)
			}
		})
	}
}

// A write at every limit at once (key, value, content type, header count
// and bytes) is accepted by the producer and applied by the store: the
// advertised limits are reachable.
func TestProduceAtTheLimits(t *testing.T) {
	c := newCluster(t)
	r := startStore(t, c, func(cfg *store.Config) { cfg.CreateTopic = true })
	r.waitReady(t)
	key := "pay/" + strings.Repeat("k", keyspace.MaxKeyLen-4)
	w := store.Write{
		Key:         key,
		Value:       bytes.Repeat([]byte("v"), store.MaxValueBytes),
		ContentType: strings.Repeat("c", store.MaxContentTypeBytes),
		Headers:     []store.Header{{Key: "h", Value: bytes.Repeat([]byte("h"), store.MaxHeaderBytes-store.MaxContentTypeBytes-len(store.ContentTypeHeader)-1)}},
	}
	for i := range store.MaxHeaders - 2 {
		w.Headers = append(w.Headers, store.Header{Key: fmt.Sprint(i % 10)})
	}
	w.Headers[0].Value = w.Headers[0].Value[:len(w.Headers[0].Value)-(store.MaxHeaders-2)]
	_, _, cur := r.produce(t, w)
	r.waitApplied(t, cur)
	if e, ok := r.snapshot(t).Get(key); !ok || len(e.Value) != store.MaxValueBytes || len(e.Headers) != store.MaxHeaders {
		t.Errorf("entry at every limit not applied: %v", ok)
	}
}

// A write the topic's max.message.bytes cannot hold is refused before
// producing, naming the topic's limit; one that fits goes through.
func TestProduceRespectsTopicMaxMessageBytes(t *testing.T) {
	c := newCluster(t)
	if err := c.CreateTopic(topic, 1, map[string]string{"cleanup.policy": "compact", "max.message.bytes": "10000"}); err != nil {
		t.Fatal(err)
	}
	r := startStore(t, c, nil)
	r.waitReady(t)
	_, _, _, err := r.Produce(within(t, 10*time.Second), store.Write{Key: "big", Value: make([]byte, 20000)})
	var re *store.RuleError
	if !errors.As(err, &re) || !errors.Is(err, store.ErrTooLargeForTopic) || re.Field != "value" || !strings.Contains(re.Msg, "max.message.bytes 10000") {
		t.Fatalf("Produce over the topic's limit = %v, want a RuleError naming max.message.bytes 10000", err)
	}
	r.produce(t, store.Write{Key: "small", Value: make([]byte, 5000)})
}
