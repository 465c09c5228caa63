package fleet

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Test timings: short.
const (
	tMin   = 100 * time.Millisecond
	tBeat  = 400 * time.Millisecond
	tGrace = 300 * time.Millisecond
)

// kafka is a kfake cluster: no internal/testkit, which imports the
// gateway, which imports this package.
type kafka struct{ Brokers []string }

func startKafka(t *testing.T) *kafka {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return &kafka{Brokers: c.ListenAddrs()}
}

var topicSeq atomic.Int64

func topicName(t *testing.T) string {
	return fmt.Sprintf("cg-%s-%d.config", strings.NewReplacer("/", "-", " ", "-").Replace(strings.ToLower(t.Name())), topicSeq.Add(1))
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func producer(t *testing.T, k *kafka) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func produce(t *testing.T, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// keyLog returns the values written under key, in log order (nil: a
// tombstone), reading the topic up to its current end.
func keyLog(t *testing.T, k *kafka, topic, key string) [][]byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	adm := producer(t, k)
	ends, err := kadm.NewClient(adm).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var out [][]byte
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %s: %v", topic, ctx.Err())
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := want[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if r.Offset+1 >= end {
				delete(want, r.Partition)
			}
			if string(r.Key) == key {
				out = append(out, r.Value)
			}
		})
	}
	return out
}

type gw struct {
	*Fleet
	stop func()
}

// start runs a Fleet named name on topic until the test ends (or stop).
func start(t *testing.T, k *kafka, topic, name string, mod func(*Config)) *gw {
	t.Helper()
	cfg := Config{
		Brokers: k.Brokers, Topic: topic, Gateway: name, Partitions: 3,
		ClientOpts:  []kgo.Opt{kgo.FetchMaxWait(50 * time.Millisecond), kgo.MetadataMinAge(100 * time.Millisecond), kgo.ProducerLinger(0)},
		MinInterval: tMin, Heartbeat: tBeat, Grace: tGrace,
		Logger: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry(),
	}
	if mod != nil {
		mod(&cfg)
	}
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != context.Canceled {
				t.Errorf("Run of %s returned %v, want context.Canceled", name, err)
			}
		})
	}
	t.Cleanup(stop)
	return &gw{Fleet: f, stop: stop}
}

func find(f *Fleet, id string) (Record, bool) {
	for _, r := range f.Snapshot() {
		if r.ClientID == id {
			return r, true
		}
	}
	return Record{}, false
}

func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue() + m.GetGauge().GetValue()
}

func TestTwoGatewaysSeeEachOther(t *testing.T) {
	k := startKafka(t)
	topic := TopicName(topicName(t))
	a := start(t, k, topic, "gw-a", nil)
	b := start(t, k, topic, "gw-b", nil)
	a.Connected("c1", Record{Service: "payments", Labels: map[string]string{"zone": "x"}, Selector: []string{"payments/"}})
	b.Connected("c2", Record{Service: "checkout"})
	b.Report(Record{ClientID: "c2", Selector: []string{"checkout/"}, AppliedCursor: []byte("cur"), Digest: []byte("dig"),
		Rejections: []Rejection{{Key: "checkout/x", Partition: 1, Offset: 7, Reason: "bad"}}})
	for _, f := range []*gw{a, b} {
		eventually(t, 10*time.Second, "both clients in "+f.cfg.Gateway+"'s view", func() bool {
			s := f.Snapshot()
			return len(s) == 2 && s[0].ClientID == "c1" && s[1].ClientID == "c2" && s[1].Digest != nil
		})
		s := f.Snapshot()
		c1, c2 := s[0], s[1]
		if c1.Gateway != "gw-a" || !c1.Connected || c1.Service != "payments" || c1.Labels["zone"] != "x" || c1.ConnectedSince.IsZero() || c1.Updated.IsZero() {
			t.Errorf("%s sees c1 as %+v", f.cfg.Gateway, c1)
		}
		if c2.Gateway != "gw-b" || !c2.Connected || string(c2.AppliedCursor) != "cur" || string(c2.Digest) != "dig" ||
			len(c2.Rejections) != 1 || c2.Rejections[0] != (Rejection{Key: "checkout/x", Partition: 1, Offset: 7, Reason: "bad"}) || c2.LastReport.IsZero() {
			t.Errorf("%s sees c2 as %+v", f.cfg.Gateway, c2)
		}
	}
	// Snapshot returns copies.
	s := a.Snapshot()
	s[0].Labels["zone"] = "changed"
	if r, _ := find(a.Fleet, "c1"); r.Labels["zone"] != "x" {
		t.Error("Snapshot shares the view's labels")
	}
	if n := value(a.m.clients); n != 2 {
		t.Errorf("clients gauge %v, want 2", n)
	}
}

func TestCoalescing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cursors []string
		want    int // records of the client: the connect, then the reports
	}{
		{"one report", []string{"c-0"}, 2},
		{"fifty reports in one interval", func() []string {
			var s []string
			for i := range 50 {
				s = append(s, fmt.Sprintf("c-%d", i))
			}
			return s
		}(), 2},
		{"unchanged reports", []string{"same", "same", "same", "same"}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := startKafka(t)
			topic := TopicName(topicName(t))
			// A long heartbeat, so only coalesced reports are written.
			a := start(t, k, topic, "gw-a", func(c *Config) { c.MinInterval, c.Heartbeat, c.Grace = 400*time.Millisecond, time.Minute, time.Minute })
			a.Connected("c1", Record{Service: "s"})
			eventually(t, 10*time.Second, "the connect read back", func() bool { _, ok := find(a.Fleet, "c1"); return ok })
			for _, c := range tc.cursors {
				a.Report(Record{ClientID: "c1", AppliedCursor: []byte(c), Digest: []byte("d")})
			}
			last := tc.cursors[len(tc.cursors)-1]
			eventually(t, 10*time.Second, "the latest report flushed by the timer", func() bool {
				r, _ := find(a.Fleet, "c1")
				return string(r.AppliedCursor) == last
			})
			time.Sleep(900 * time.Millisecond) // two more intervals: nothing else due
			log := keyLog(t, k, topic, "c1")
			if len(log) != tc.want {
				t.Fatalf("%d records of c1, want %d", len(log), tc.want)
			}
			if !bytes.Contains(log[len(log)-1], []byte(fmt.Sprintf("%q", b64(last)))) {
				t.Errorf("last record %s, want cursor %q", log[len(log)-1], last)
			}
			if n := value(a.m.published); n != float64(tc.want) {
				t.Errorf("published %v, want %d", n, tc.want)
			}
		})
	}
}

func TestClientMoves(t *testing.T) {
	for _, tc := range []struct {
		name string
		// steps run in order; the client ends on B.
		disconnectFirst bool
	}{
		{"A sees the close after B the connect", false},
		{"A sees the close before B the connect", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := startKafka(t)
			topic := TopicName(topicName(t))
			a := start(t, k, topic, "gw-a", nil)
			b := start(t, k, topic, "gw-b", nil)
			a.Connected("c", Record{Service: "s"})
			a.Report(Record{ClientID: "c", AppliedCursor: []byte("on-a")})
			eventually(t, 10*time.Second, "c reported on A in B's view", func() bool {
				r, ok := find(b.Fleet, "c")
				return ok && r.Gateway == "gw-a" && string(r.AppliedCursor) == "on-a"
			})
			if tc.disconnectFirst {
				a.Disconnected("c")
				b.Connected("c", Record{Service: "s"})
			} else {
				b.Connected("c", Record{Service: "s"})
				a.Disconnected("c")
			}
			onB := func(f *gw) func() bool {
				return func() bool {
					r, ok := find(f.Fleet, "c")
					return ok && r.Gateway == "gw-b" && r.Connected && string(r.AppliedCursor) == "on-a"
				}
			}
			for _, f := range []*gw{a, b} {
				eventually(t, 10*time.Second, "c connected on B in "+f.cfg.Gateway+"'s view", onB(f))
			}
			// Past A's grace (and a few ticks): still on B everywhere.
			time.Sleep(3 * tGrace)
			for _, f := range []*gw{a, b} {
				if !onB(f)() {
					r, ok := find(f.Fleet, "c")
					t.Errorf("%s sees c as %+v (present %v), want connected on gw-b", f.cfg.Gateway, r, ok)
				}
			}
			if n := value(a.m.tombstones); n != 0 {
				t.Errorf("A wrote %v tombstones", n)
			}
		})
	}
}

func TestGoneClientRemoved(t *testing.T) {
	k := startKafka(t)
	topic := TopicName(topicName(t))
	a := start(t, k, topic, "gw-a", nil)
	b := start(t, k, topic, "gw-b", nil)
	a.Connected("c", Record{Service: "s"})
	a.Connected("stays", Record{Service: "s"})
	for _, f := range []*gw{a, b} {
		eventually(t, 10*time.Second, "c connected in "+f.cfg.Gateway+"'s view", func() bool { r, _ := find(f.Fleet, "c"); return r.Connected })
	}
	a.Disconnected("c")
	for _, f := range []*gw{a, b} {
		eventually(t, 10*time.Second, "c disconnected in "+f.cfg.Gateway+"'s view", func() bool { r, ok := find(f.Fleet, "c"); return ok && !r.Connected })
	}
	for _, f := range []*gw{a, b} {
		eventually(t, 10*time.Second, "c gone from "+f.cfg.Gateway+"'s view", func() bool { _, ok := find(f.Fleet, "c"); return !ok })
		if _, ok := find(f.Fleet, "stays"); !ok {
			t.Errorf("%s lost the client still connected", f.cfg.Gateway)
		}
	}
	if log := keyLog(t, k, topic, "c"); log[len(log)-1] != nil {
		t.Errorf("last record of c is %s, want a tombstone", log[len(log)-1])
	}
	if n := value(a.m.tombstones); n != 1 {
		t.Errorf("A wrote %v tombstones, want 1", n)
	}
}

// A gateway that dies never publishes its disconnects: the others remove
// its clients once their records are 10×Grace old; live ones stay.
func TestDeadGatewaySwept(t *testing.T) {
	k := startKafka(t)
	topic := TopicName(topicName(t))
	short := func(c *Config) { c.Grace, c.Heartbeat = 150*time.Millisecond, 300*time.Millisecond }
	a := start(t, k, topic, "gw-a", short)
	b := start(t, k, topic, "gw-b", short)
	a.Connected("on-a", Record{})
	b.Connected("on-b", Record{})
	eventually(t, 10*time.Second, "both in B's view", func() bool { return len(b.Snapshot()) == 2 })
	a.stop()
	stopped := time.Now()
	eventually(t, 20*time.Second, "A's client swept", func() bool { _, ok := find(b.Fleet, "on-a"); return !ok })
	if d := time.Since(stopped); d < sweepFactor*150*time.Millisecond-tBeat {
		t.Errorf("swept after %v, before 10×Grace", d)
	}
	if r, ok := find(b.Fleet, "on-b"); !ok || !r.Connected {
		t.Errorf("B's live client %+v (present %v)", r, ok)
	}
}

// A report that reaches another gateway than the client's stream is
// published with the owner's connection, and the owner's later records
// keep it.
func TestReportThroughOtherGateway(t *testing.T) {
	k := startKafka(t)
	topic := TopicName(topicName(t))
	a := start(t, k, topic, "gw-a", nil)
	b := start(t, k, topic, "gw-b", nil)
	a.Connected("c", Record{Service: "s"})
	eventually(t, 10*time.Second, "c in B's view", func() bool { _, ok := find(b.Fleet, "c"); return ok })
	b.Report(Record{ClientID: "c", AppliedCursor: []byte("via-b")})
	for _, f := range []*gw{a, b} {
		eventually(t, 10*time.Second, "the report in "+f.cfg.Gateway+"'s view", func() bool {
			r, _ := find(f.Fleet, "c")
			return string(r.AppliedCursor) == "via-b" && r.Gateway == "gw-a" && r.Connected
		})
	}
	time.Sleep(3 * tGrace) // A writes its connected client again every Grace
	if r, _ := find(b.Fleet, "c"); string(r.AppliedCursor) != "via-b" || r.Gateway != "gw-a" || !r.Connected {
		t.Errorf("after A's heartbeats c is %+v", r)
	}
}

func TestHostileRecords(t *testing.T) {
	k := startKafka(t)
	topic := TopicName(topicName(t))
	a := start(t, k, topic, "gw-a", nil)
	good := func(id string) []byte {
		b, err := encodeRecord(Record{ClientID: id, Gateway: "x", Updated: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	p := producer(t, k)
	for i, tc := range []struct {
		name, reason string
		key          string
		value        []byte
	}{
		{"too large", reasonTooLarge, "c", bytes.Repeat([]byte(" "), MaxRecordBytes+1)},
		{"not JSON", reasonBadJSON, "c", []byte("{not json")},
		{"empty value", reasonBadJSON, "c", []byte{}},
		{"unknown field", reasonBadJSON, "c", []byte(`{"v":1,"client_id":"c","gateway":"x","updated_ms":1,"extra":1}`)},
		{"trailing data", reasonBadJSON, "c", append(good("c"), []byte(" {}")...)},
		{"wrong type", reasonBadJSON, "c", []byte(`{"v":1,"client_id":"c","gateway":7}`)},
		{"no version", reasonVersion, "c", []byte(`{"client_id":"c"}`)},
		{"version 2", reasonVersion, "c", []byte(`{"v":2,"client_id":"c"}`)},
		{"bad client ID", reasonInvalid, "c\x00", []byte(`{"v":1,"client_id":"c\u0000","gateway":"x"}`)},
		{"negative time", reasonInvalid, "c", []byte(`{"v":1,"client_id":"c","gateway":"x","updated_ms":-5}`)},
		{"key mismatch", reasonKeyMismatch, "other", good("c")},
		{"no key", reasonNoKey, "", good("c")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := value(a.m.skipped.WithLabelValues(tc.reason))
			var key []byte
			if tc.key != "" {
				key = []byte(tc.key)
			}
			sentinel := fmt.Sprintf("ok-%d", i)
			produce(t, p, &kgo.Record{Topic: topic, Key: key, Value: tc.value}, &kgo.Record{Topic: topic, Key: []byte(sentinel), Value: good(sentinel)})
			eventually(t, 10*time.Second, "the good record after it applied", func() bool { _, ok := find(a.Fleet, sentinel); return ok })
			// Same key, same partition: the sentinel is behind the bad one
			// only for equal keys; wait for the count too.
			eventually(t, 10*time.Second, "the bad record counted", func() bool {
				return value(a.m.skipped.WithLabelValues(tc.reason)) == before+1
			})
			if _, ok := find(a.Fleet, "c"); ok {
				t.Error("the hostile record entered the view")
			}
		})
	}
}

func TestMaxClients(t *testing.T) {
	k := startKafka(t)
	topic := TopicName(topicName(t))
	a := start(t, k, topic, "gw-a", func(c *Config) { c.MaxClients = 3 })
	b := start(t, k, topic, "gw-b", nil)
	for i := range 5 {
		b.Connected(fmt.Sprintf("b%d", i), Record{})
		a.Connected(fmt.Sprintf("a%d", i), Record{})
	}
	eventually(t, 10*time.Second, "B's view of all", func() bool { return len(b.Snapshot()) == 8 })
	eventually(t, 10*time.Second, "A's view full", func() bool {
		return len(a.Snapshot()) == 3 && value(a.m.skipped.WithLabelValues(reasonViewFull)) == 5
	})
	if n := value(a.m.skipped.WithLabelValues(reasonLocalFull)); n != 2 {
		t.Errorf("A dropped %v of its own clients, want 2", n)
	}
	if n := value(a.m.clients); n != 3 {
		t.Errorf("clients gauge %v, want 3", n)
	}
}

func TestConfig(t *testing.T) {
	ok := Config{Brokers: []string{"b"}, Topic: "t.fleet", Gateway: "g"}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		err  string
	}{
		{"defaults", func(*Config) {}, ""},
		{"no brokers", func(c *Config) { c.Brokers = nil }, "no brokers"},
		{"no topic", func(c *Config) { c.Topic = "" }, "no topic"},
		{"no gateway", func(c *Config) { c.Gateway = "" }, "no gateway"},
		{"negative", func(c *Config) { c.MinInterval = -1 }, "negative"},
		{"heartbeat under the interval", func(c *Config) { c.Heartbeat = time.Second }, "Heartbeat"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			f, err := New(c)
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if f.cfg.MinInterval != 5*time.Second || f.cfg.Grace != time.Minute || f.cfg.Heartbeat != 5*time.Second || f.cfg.MaxClients != 100_000 || f.cfg.Partitions != 6 {
					t.Errorf("defaults %+v", f.cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("err %v, want %q", err, tc.err)
			}
		})
	}
	reg := prometheus.NewRegistry()
	c := ok
	c.Registerer = reg
	if _, err := New(c); err != nil {
		t.Fatal(err)
	}
	if _, err := New(c); err == nil {
		t.Error("a second Fleet on the same registerer: no error")
	}
	if TopicName("confgate.config") != "confgate.config.fleet" {
		t.Error(TopicName("confgate.config"))
	}
}
