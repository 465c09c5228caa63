package history

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/twmb/franz-go/pkg/kgo"
)

// follower feeds one Subscribe stream into a ClientLog through the proto
// adapter, as a client's receive loop would.
type follower struct {
	cl   *ClientLog
	s    *testkit.Stream
	stop atomic.Bool
	done chan struct{}
	err  error
}

// follow opens a stream on g for cl: with cl's last cursor when resume is
// set, else without one.
func follow(t *testing.T, g *testkit.Gateway, cl *ClientLog, resume bool) *follower {
	t.Helper()
	req := &confgatev1.SubscribeRequest{Selector: &confgatev1.Selector{Prefixes: cl.Prefixes()}}
	from := cursor.Cursor{}
	if resume {
		from = cl.Cursor()
		req.ResumeCursor = from.Encode()
	}
	cl.Reconnect(from, g.Addr)
	f := &follower{cl: cl, s: testkit.Subscribe(t, g, req), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for !f.stop.Load() {
			m, err := f.s.Next(50 * time.Millisecond)
			if errors.Is(err, testkit.ErrTimeout) {
				continue
			}
			if err != nil {
				if !f.stop.Load() {
					f.err = err
				}
				return
			}
			cl.ObserveProto(m)
		}
	}()
	return f
}

// close ends the stream; nothing is observed after it returns.
func (f *follower) close() {
	f.stop.Store(true)
	f.s.Close()
	<-f.done
}

func waitCovers(t *testing.T, cl *ClientLog, c cursor.Cursor) {
	t.Helper()
	testkit.Eventually(t, 30*time.Second, fmt.Sprintf("client %s to reach %v", cl.Name(), c.Offsets), func() bool {
		return cl.Cursor().Covers(c)
	})
}

func decodeCursor(t *testing.T, b []byte) cursor.Cursor {
	t.Helper()
	c, err := cursor.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// End to end: subscribers with different selectors on two gateways while
// puts and deletes (of live and of absent keys) happen; one client
// disconnects and resumes on a gateway with a tiny history window (a
// coalesced delta from the index), then back on the first one (a resume
// from history); another resumes on a gateway started after its cursor (a
// flagged reset snapshot). The checker, reading the topic's actual log,
// passes every client, and their views' digests equal the gateways'.
func TestEndToEndHistoryThroughGateways(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	opts := testkit.Options{Gateway: gateway.Config{ProgressInterval: 50 * time.Millisecond}}
	g1 := testkit.StartGateway(t, k, topic, opts)
	small := opts
	small.Store = store.Config{HistoryBatches: 2}
	g2 := testkit.StartGateway(t, k, topic, small)
	id := g1.Store.Status().Topic

	var last []byte
	write := func(i int) {
		switch {
		case i%9 == 4:
			last = testkit.Delete(t, g1, fmt.Sprintf("app/k%d", i%7)).Cursor
		case i%11 == 5:
			last = testkit.Delete(t, g2, fmt.Sprintf("app/never%d", i)).Cursor // absent: changes nothing
		case i%3 == 0:
			last = testkit.Put(t, g2, fmt.Sprintf("cfg/c%d", i%5), fmt.Sprint(i)).Cursor
		case i%3 == 1:
			last = testkit.Put(t, g1, fmt.Sprintf("app/k%d", i%7), fmt.Sprint(i)).Cursor
		default:
			last = testkit.Put(t, g1, fmt.Sprintf("other/o%d", i%4), fmt.Sprint(i)).Cursor
		}
	}
	for i := range 20 {
		write(i)
	}

	rec := NewRecorder()
	fs := map[string]*follower{
		"all":     follow(t, g1, rec.Client("all", nil), false),
		"app":     follow(t, g1, rec.Client("app", []string{"app/"}), false),
		"multi":   follow(t, g2, rec.Client("multi", []string{"app/k1", "cfg/"}), false),
		"resumer": follow(t, g1, rec.Client("resumer", []string{"app/", "cfg/"}), false),
		"late":    follow(t, g1, rec.Client("late", []string{"cfg/"}), false),
	}
	for i := 20; i < 60; i++ {
		write(i)
	}
	at := decodeCursor(t, last)
	for _, f := range fs {
		waitCovers(t, f.cl, at)
	}

	// resumer: away while 30 writes happen, back on g2, whose two-batch
	// window no longer holds them: one coalesced delta from its index.
	fs["resumer"].close()
	fs["late"].close()
	for i := 60; i < 90; i++ {
		write(i)
	}
	fs["resumer"] = follow(t, g2, rec.Client("resumer", nil), true)
	waitCovers(t, fs["resumer"].cl, decodeCursor(t, last))
	// Away again, back on g1, which holds the whole history.
	fs["resumer"].close()
	for i := 90; i < 110; i++ {
		write(i)
	}
	fs["resumer"] = follow(t, g1, rec.Client("resumer", nil), true)

	// late: resumes on a gateway that started after its cursor, and does
	// not trust the log's tombstones: a reset.
	noDiffs := opts
	noDiffs.Store = store.Config{NoBootstrapDiffs: true}
	g3 := testkit.StartGateway(t, k, topic, noDiffs)
	fs["late"] = follow(t, g3, rec.Client("late", nil), true)
	for i := 110; i < 150; i++ {
		write(i)
	}

	log := k.ReadLog(t, topic)
	end := LogEnd(log, id)
	for _, f := range fs {
		waitCovers(t, f.cl, end)
	}
	for name, f := range fs {
		f.close()
		if f.err != nil {
			t.Fatalf("stream of %s ended: %v", name, f.err)
		}
	}
	start := time.Now()
	if err := rec.Check(log, id); err != nil {
		t.Fatal(err)
	}
	t.Logf("checked %d clients over %d records in %s", len(fs), len(log), time.Since(start))

	// Not vacuous: the same real history with one change dropped, or one
	// value altered, is caught at that observation.
	for _, tamper := range []string{"drop", "alter"} {
		evs := rec.Client("all", nil).snapshot().events
		bad := NewRecorder()
		cl := bad.Client("all", nil)
		at := -1
		for i, ev := range evs {
			o := ev.obs
			// A put: a delete's value is not checked, there is none.
			if at < 0 && i > 5 && o.Kind == Delta && !o.Coalesced && len(o.Changes) > 0 && !o.Changes[0].Deleted {
				at = i
				o.Changes = append([]Change(nil), o.Changes...)
				if tamper == "drop" {
					o.Changes = o.Changes[1:]
				} else {
					o.Changes[0].Value = []byte("tampered")
				}
			}
			if ev.rc != nil {
				cl.Reconnect(ev.rc.from, ev.rc.addr)
			}
			cl.Observe(o)
		}
		var v *Violation
		if err := bad.Check(log, id); !errors.As(err, &v) || v.Index != at || v.Rule != NoGaps {
			t.Fatalf("%s a change of observation #%d: Check = %v", tamper, at, err)
		}
	}

	// The views are the gateways' state: compare digests, once g1 has
	// applied everything the clients saw.
	testkit.Eventually(t, 10*time.Second, "g1 at the log's end", func() bool { return g1.Store.Status().Cursor.Covers(end) })
	for _, name := range rec.Clients() {
		cl := rec.Client(name, nil)
		_, snapEnd, _ := testkit.Snapshot(t, g1, cl.Prefixes()...)
		if !decodeCursor(t, snapEnd.Cursor).Equal(cl.Cursor()) {
			t.Fatalf("%s: gateway at %v, client at %v", name, decodeCursor(t, snapEnd.Cursor).Offsets, cl.Cursor().Offsets)
		}
		if string(Digest(rec.View(name))) != string(snapEnd.Digest) {
			t.Fatalf("%s: view digest differs from the gateway's", name)
		}
	}
	// The scenario did what it says.
	kinds := func(name string) string { return kindsOf(rec.Client(name, nil)) }
	if got := kinds("resumer"); !strings.Contains(got, "C") || strings.Contains(got, "R") {
		t.Errorf("resumer saw %q: want a coalesced resume and no reset", got)
	}
	if got := kinds("late"); !strings.Contains(got, "R") || strings.Count(got, "R") != 1 {
		t.Errorf("late saw %q: want one reset snapshot, from the gateway started after its cursor", got)
	}
	for _, name := range rec.Clients() {
		t.Logf("%s: %s", name, kinds(name))
	}
}

// A reader that stops reading under a write load is coalesced, then
// caught up; the checker verifies the coalesced delta against the log.
func TestEndToEndSlowReaderCoalesced(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	g := testkit.StartGateway(t, k, topic, testkit.Options{
		Store:   store.Config{MaxBatchRecords: 1},
		Gateway: gateway.Config{MaxPendingBatches: 8, ProgressInterval: 50 * time.Millisecond},
	})
	id := g.Store.Status().Topic
	for i := range 10 {
		testkit.Put(t, g, fmt.Sprintf("hot/%d", i), "0")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rec := NewRecorder()
	slow := rec.Client("slow", []string{"hot/"})
	slow.Reconnect(cursor.Cursor{}, g.Addr)
	st, err := testkit.SlowReaderClient(t, g).Subscribe(ctx, &confgatev1.SubscribeRequest{Selector: &confgatev1.Selector{Prefixes: []string{"hot/"}}})
	if err != nil {
		t.Fatal(err)
	}
	fast := follow(t, g, rec.Client("fast", []string{"hot/"}), false)

	value := strings.Repeat("z", 16<<10)
	for round := range 30 {
		for i := range 10 {
			if i == 3 && round%4 == 1 {
				testkit.Delete(t, g, fmt.Sprintf("hot/%d", i))
				continue
			}
			testkit.Put(t, g, fmt.Sprintf("hot/%d", i), fmt.Sprintf("%02d%s", round, value))
		}
	}
	log := k.ReadLog(t, topic)
	end := LogEnd(log, id)
	coalesced := 0
	for !slow.Cursor().Covers(end) {
		m, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if m.GetDelta().GetCoalesced() {
			coalesced++
		}
		slow.ObserveProto(m)
	}
	waitCovers(t, fast.cl, end)
	fast.close()
	if err := rec.Check(log, id); err != nil {
		t.Fatal(err)
	}
	if coalesced == 0 {
		t.Fatal("the slow reader was never coalesced")
	}
	t.Logf("%d records; slow reader: %d observations, %d coalesced; fast reader: %d observations", len(log), slow.Len(), coalesced, fast.cl.Len())
}

// Chaos: three gateways that cut batches, chunks and history differently,
// two concurrent writers (puts, deletes of live and absent keys, on keys
// spread over every partition), and clients that drop their stream at
// random moments (mid-snapshot included) and resume on a random gateway.
// Every client must pass the checker.
func TestEndToEndRandomResumes(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	base := gateway.Config{ProgressInterval: 20 * time.Millisecond}
	gws := []*testkit.Gateway{
		testkit.StartGateway(t, k, topic, testkit.Options{Gateway: base}),
		testkit.StartGateway(t, k, topic, testkit.Options{
			Store:   store.Config{MaxBatchRecords: 3, HistoryBatches: 16},
			Gateway: gateway.Config{ProgressInterval: 20 * time.Millisecond, ChunkBytes: 300},
		}),
		testkit.StartGateway(t, k, topic, testkit.Options{
			Store:   store.Config{MaxBatchRecords: 1, HistoryBatches: 64},
			Gateway: gateway.Config{ProgressInterval: 20 * time.Millisecond, MaxPendingBatches: 2, MaxCoalescedBytes: 4 << 10, ChunkBytes: 200},
		}),
	}
	id := gws[0].Store.Status().Topic
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rnd := newRand(seed)

	// Writers finish the write in flight when told to stop: a cancelled
	// write may still land in the log after it is read.
	var stop atomic.Bool
	writerDone := make(chan error, 2)
	for w := range 2 {
		wr := newRand(seed + int64(w) + 1)
		go func() {
			for i := 0; !stop.Load(); i++ {
				g := gws[wr.intn(len(gws))]
				key := fmt.Sprintf("%s/k%d", []string{"app", "cfg", "etc"}[wr.intn(3)], wr.intn(12))
				var err error
				wctx, wcancel := context.WithTimeout(context.Background(), 10*time.Second)
				if wr.intn(4) == 0 {
					_, err = g.Client.Delete(wctx, &confgatev1.DeleteRequest{Key: key})
				} else {
					_, err = g.Client.Put(wctx, &confgatev1.PutRequest{Key: key, Value: []byte(fmt.Sprintf("w%d-%d-%s", w, i, strings.Repeat("x", wr.intn(120))))})
				}
				wcancel()
				if err != nil {
					writerDone <- err
					return
				}
			}
			writerDone <- nil
		}()
	}

	rec := NewRecorder()
	selectors := [][]string{nil, {"app/"}, {"cfg/", "etc/k1"}, {"app/k1", "etc/"}, {"nothing/"}, {"cfg/k"}}
	fs := make([]*follower, len(selectors))
	for i, sel := range selectors {
		fs[i] = follow(t, gws[i%len(gws)], rec.Client(fmt.Sprintf("c%d", i), sel), false)
	}
	deadline := time.Now().Add(4 * time.Second)
	resumes := 0
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(5+rnd.intn(60)) * time.Millisecond)
		i := rnd.intn(len(fs))
		fs[i].close()
		if fs[i].err != nil {
			t.Fatalf("stream of c%d ended: %v", i, fs[i].err)
		}
		fs[i] = follow(t, gws[rnd.intn(len(gws))], fs[i].cl, fs[i].cl.Len() > 0)
		resumes++
	}
	stop.Store(true)
	for range 2 {
		if err := <-writerDone; err != nil {
			t.Fatalf("writer: %v", err)
		}
	}
	log := k.ReadLog(t, topic)
	end := LogEnd(log, id)
	for _, f := range fs {
		waitCovers(t, f.cl, end)
	}
	for i, f := range fs {
		f.close()
		if f.err != nil {
			t.Fatalf("stream of c%d ended: %v", i, f.err)
		}
	}
	start := time.Now()
	vs, err := rec.CheckAll(log, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range vs {
		t.Error(v)
	}
	obs := 0
	for _, name := range rec.Clients() {
		obs += rec.Client(name, nil).Len()
	}
	t.Logf("%d records, %d resumes, %d observations checked in %s", len(log), resumes, obs, time.Since(start))
	reasons := map[string]int{}
	for _, name := range rec.Clients() {
		for _, ev := range rec.Client(name, nil).snapshot().events {
			if ev.obs.Reset {
				reasons[ev.obs.Reason]++
			}
		}
	}
	t.Logf("reset snapshots: %v", reasons)
	for _, name := range rec.Clients() {
		s := kindsOf(rec.Client(name, nil))
		t.Logf("%s: %d snapshots, %d resets, %d deltas, %d coalesced, %d progress", name,
			strings.Count(s, "S"), strings.Count(s, "R"), strings.Count(s, "d"), strings.Count(s, "C"), strings.Count(s, "."))
	}
}

// rand is a tiny deterministic generator (the seed is logged).
type rand struct{ s uint64 }

func newRand(seed int64) *rand { return &rand{s: uint64(seed)*2862933555777941757 + 3037000493} }

func (r *rand) intn(n int) int {
	r.s ^= r.s << 13
	r.s ^= r.s >> 7
	r.s ^= r.s << 17
	return int(r.s % uint64(n))
}

// kindsOf renders a client's observations, one letter each: S snapshot,
// R reset snapshot, d delta, C coalesced delta, . progress.
func kindsOf(cl *ClientLog) string {
	var b strings.Builder
	for _, ev := range cl.snapshot().events {
		o := ev.obs
		switch {
		case o.Kind == Snapshot && o.Reset:
			b.WriteString("R")
		case o.Kind == Snapshot:
			b.WriteString("S")
		case o.Kind == Delta && o.Coalesced:
			b.WriteString("C")
		case o.Kind == Delta:
			b.WriteString("d")
		default:
			b.WriteString(".")
		}
	}
	return b.String()
}

// Records a gateway must skip (misrouted, invalid keys), tombstones of
// absent keys and transactions (committed and aborted, leaving markers)
// written by another producer between confgate's own writes: the checker
// models the same skips as the store, and every subscriber passes.
func TestEndToEndForeignRecords(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	g := testkit.StartGateway(t, k, topic, testkit.Options{Gateway: gateway.Config{ProgressInterval: 50 * time.Millisecond}})
	id := g.Store.Status().Topic
	parts := int(len(g.Store.Status().Cursor.Offsets))
	owner := func(key string) int32 {
		return int32(kgo.StickyKeyPartitioner(nil).ForTopic(topic).Partition(&kgo.Record{Key: []byte(key)}, parts))
	}
	raw := testkit.Producer(t, k, kgo.DefaultProduceTopic(topic), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	rec := NewRecorder()
	testkit.Put(t, g, "ext/a", "0")
	fs := []*follower{
		follow(t, g, rec.Client("all", nil), false),
		follow(t, g, rec.Client("ext", []string{"ext/"}), false),
		follow(t, g, rec.Client("tx", []string{"tx/"}), false),
	}
	for i := range 3 {
		testkit.Produce(t, raw,
			&kgo.Record{Key: []byte("ext/a"), Value: []byte(fmt.Sprint("misrouted", i)), Partition: (owner("ext/a") + 1) % int32(parts)},
			&kgo.Record{Key: []byte("/ext/bad"), Value: []byte("bad key"), Partition: owner("/ext/bad")},
			&kgo.Record{Key: []byte("ext/gone"), Partition: owner("ext/gone")}, // tombstone of an absent key
			&kgo.Record{Key: []byte("ext/b"), Value: []byte(fmt.Sprint(i)), Partition: owner("ext/b")},
		)
		testkit.Put(t, g, "ext/a", fmt.Sprint(i+1))
		testkit.Delete(t, g, "ext/b")
	}
	tx := testkit.Producer(t, k, kgo.DefaultProduceTopic(topic), kgo.TransactionalID(topic+"-tx"))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, commit := range []bool{true, false, true} {
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := tx.ProduceSync(ctx, &kgo.Record{Key: []byte(fmt.Sprintf("tx/k%d", i)), Value: []byte(fmt.Sprint(commit))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := tx.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	// EndTransaction returns before the brokers wrote the commit markers:
	// wait until the last committed record is readable.
	testkit.Eventually(t, 20*time.Second, "the last transaction's commit", func() bool {
		gctx, gcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer gcancel()
		_, err := g.Client.Get(gctx, &confgatev1.GetRequest{Key: "tx/k2"})
		return err == nil
	})
	testkit.Put(t, g, "ext/last", "1")
	log := k.ReadLog(t, topic)
	// The gateway's cursor, past the transaction markers, is what clients
	// reach: LogEnd (after the last data record) is covered by it.
	at := g.Store.Status().Cursor
	if !at.Covers(LogEnd(log, id)) {
		t.Fatalf("gateway at %v, behind the log's end %v", at.Offsets, LogEnd(log, id).Offsets)
	}
	for _, f := range fs {
		waitCovers(t, f.cl, at)
		f.close()
	}
	if err := rec.Check(log, id); err != nil {
		t.Fatal(err)
	}
	if v := rec.View("tx"); len(v) != 2 || v["tx/k1"].Key != "" {
		t.Fatalf("tx view %v: want the two committed keys", v)
	}
	if v := rec.View("ext"); string(v["ext/a"].Value) != "3" || len(v) != 2 {
		t.Fatalf("ext view %v", v)
	}
}

// A deleted and recreated topic: every subscriber gets a reset snapshot
// of the new topic (STATE_REBUILT on a live stream, TOPIC_CHANGED on a
// resume with an old cursor); the checker, given the new topic's log,
// passes them, with the old topic's part checked for order only.
func TestEndToEndTopicRecreated(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	g := testkit.StartGateway(t, k, topic, testkit.Options{Gateway: gateway.Config{ProgressInterval: 50 * time.Millisecond}})
	testkit.Put(t, g, "old/a", "1")
	rec := NewRecorder()
	live := follow(t, g, rec.Client("live", nil), false)
	away := follow(t, g, rec.Client("away", nil), false)
	old := g.Store.Status().Cursor
	waitCovers(t, live.cl, old)
	waitCovers(t, away.cl, old)
	away.close()

	k.DeleteTopic(t, topic)
	k.CreateTopic(t, topic, int32(len(old.Offsets)), map[string]string{"cleanup.policy": "compact"})
	testkit.Produce(t, testkit.Producer(t, k, kgo.DefaultProduceTopic(topic)), &kgo.Record{Key: []byte("new/c"), Value: []byte("2")})
	testkit.Eventually(t, 60*time.Second, "the gateway on the new topic", func() bool {
		st := g.Store.Status()
		return st.Ready && st.Topic != old.Topic && st.Entries == 1
	})
	// Written through the gateway: its producer follows the new topic ID.
	testkit.Put(t, g, "new/d", "3")
	away = follow(t, g, away.cl, true)
	id := g.Store.Status().Topic
	log := k.ReadLog(t, topic)
	end := LogEnd(log, id)
	for _, f := range []*follower{live, away} {
		waitCovers(t, f.cl, end)
		f.close()
	}
	if err := rec.Check(log, id); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"live": "SNAPSHOT_REASON_STATE_REBUILT", "away": "SNAPSHOT_REASON_TOPIC_CHANGED"} {
		var reasons []string
		for _, ev := range rec.Client(name, nil).snapshot().events {
			if ev.obs.Reset {
				reasons = append(reasons, ev.obs.Reason)
			}
		}
		if len(reasons) != 1 || reasons[0] != want {
			t.Fatalf("%s saw resets %v (%s), want one %s", name, reasons, kindsOf(rec.Client(name, nil)), want)
		}
	}
}
