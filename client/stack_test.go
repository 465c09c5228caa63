package client

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// These tests run the client against the real store and gateway
// (internal/testkit: kfake, or Apache Kafka with CONFGATE_KAFKA_BROKERS).

// stackWait bounds every wait on the real stack (real Kafka is slower
// than kfake).
const stackWait = 30 * time.Second

// proxy is a TCP forwarder on a fixed 127.0.0.1 port, so a view keeps one
// address while gateways stop and start on new ports. With no target it
// accepts and closes at once: to a client, every gateway is down.
type proxy struct {
	addr string
	lis  net.Listener
	wg   sync.WaitGroup

	mu     sync.Mutex
	target string
	conns  map[net.Conn]struct{} // both ends of every forwarded connection
	frozen bool                  // forward nothing, close nothing
}

// freeze makes the proxy a black hole: bytes are read and dropped, no
// connection is closed, as when a gateway's host or network vanishes.
func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.frozen = true
}

func (p *proxy) isFrozen() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.frozen
}

func startProxy(t *testing.T) *proxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{addr: lis.Addr().String(), lis: lis, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(func() {
		_ = lis.Close()
		p.set("")
		p.wg.Wait()
	})
	return p
}

// set forwards new connections to target ("" for none) and cuts the
// current ones.
func (p *proxy) set(target string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
	for c := range p.conns {
		_ = c.Close()
	}
	clear(p.conns)
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.lis.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		if target == "" {
			_ = in.Close()
			continue
		}
		out, err := net.DialTimeout("tcp", target, time.Second)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		if p.target != target { // cut while dialing
			p.mu.Unlock()
			_ = in.Close()
			_ = out.Close()
			continue
		}
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

func (p *proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		frozen := p.isFrozen()
		if n > 0 && !frozen {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			// A black hole passes no close on either: set and the test's
			// cleanup close what is left.
			if !frozen {
				_ = dst.Close()
				_ = src.Close()
			}
			return
		}
	}
}

// gatewayState is a gateway's GetSnapshot for prefixes: digest and cursor.
func gatewayState(t *testing.T, g *testkit.Gateway, prefixes ...string) (map[string]*confgatev1.Entry, []byte, string) {
	t.Helper()
	view, end, _ := testkit.Snapshot(t, g, prefixes...)
	c, err := cursor.Decode(end.GetCursor())
	if err != nil {
		t.Fatal(err)
	}
	return view, end.GetDigest(), c.String()
}

// converged waits until v holds exactly g's state for prefixes, at g's
// cursor, and v is live on a gateway.
func converged(t *testing.T, v *View, g *testkit.Gateway, prefixes ...string) map[string]*confgatev1.Entry {
	t.Helper()
	var view map[string]*confgatev1.Entry
	testkit.Eventually(t, stackWait, "the view to equal the gateway's snapshot", func() bool {
		var sum []byte
		var cur string
		view, sum, cur = gatewayState(t, g, prefixes...)
		st := v.Status()
		return bytes.Equal(v.Digest(), sum) && v.Cursor() == cur && st.Connected && !st.Stale
	})
	if v.Len() != len(view) {
		t.Fatalf("view has %d entries, the gateway %d", v.Len(), len(view))
	}
	for k, e := range view {
		got, ok := v.Get(k)
		if !ok || !bytes.Equal(got.Value, e.GetValue()) || got.Offset != e.GetVersion().GetOffset() {
			t.Fatalf("%s = %+v, %v; the gateway has %v", k, got, ok, e)
		}
	}
	return view
}

func subscribeSnapshots(t *testing.T, g *testkit.Gateway) float64 {
	return testkit.Metric(t, g, "confgate_gateway_snapshots_total", "") -
		testkit.Metric(t, g, "confgate_gateway_snapshots_total", "get_snapshot")
}

// TestStackStateFileBootWhileDown: a view persists to its state file; a
// restarted service boots from the file while every gateway is down,
// serves it at once as stale, and once a new gateway answers it resumes
// from the file's cursor with deltas (the gateway counts a "history"
// resume and sends no snapshot) and converges to the gateway's state.
func TestStackStateFileBootWhileDown(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	g1 := testkit.StartGateway(t, k, topic, testkit.Options{})
	for _, kv := range [][2]string{{"app/a", "1"}, {"app/b", "2"}, {"app/c", "3"}, {"other/x", "9"}} {
		testkit.Put(t, g1, kv[0], kv[1])
	}
	path := filepath.Join(t.TempDir(), "view.state")
	prefixes := []string{"app/"}

	// First life: sync, follow some changes, persist.
	v1 := startFileView(t, Config{Addrs: []string{g1.Addr}, Prefixes: prefixes, StateFileInterval: 10 * time.Millisecond}, path)
	waitSyncedFor(t, v1)
	testkit.Put(t, g1, "app/b", "2b")
	testkit.Delete(t, g1, "app/c")
	testkit.Put(t, g1, "app/d", "4")
	before := converged(t, v1, g1, prefixes...)
	if err := v1.Close(); err != nil {
		t.Fatal(err)
	}
	saved := fileCursor(t, path, prefixes...)
	if saved != v1.Cursor() || saved == "" {
		t.Fatalf("state file cursor %q, the closed view's %q", saved, v1.Cursor())
	}
	g1.Stop()

	// Second life: every gateway is down.
	p := startProxy(t)
	var rec recorder
	v2 := startFileView(t, Config{Addrs: []string{p.addr}, Prefixes: prefixes, OnChange: rec.add}, path)
	if !bytes.Equal(v2.Digest(), v1.Digest()) || v2.Len() != len(before) || v2.Cursor() != saved {
		t.Fatalf("loaded view: %d entries at %s, want %d at %s (digests %x, %x)", v2.Len(), v2.Cursor(), len(before), saved, v2.Digest(), v1.Digest())
	}
	if e, ok := v2.Get("app/b"); !ok || string(e.Value) != "2b" {
		t.Errorf("app/b = %q, %v from the file", e.Value, ok)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
	defer cancel()
	if err := v2.WaitLoaded(ctx); err != nil {
		t.Errorf("WaitLoaded = %v, want nil at once", err)
	}
	testkit.Eventually(t, stackWait, "failed attempts", func() bool { return v2.Status().Reconnects >= 3 })
	if st := v2.Status(); !st.FromFile || !st.Stale || st.Connected || st.LastError == nil {
		t.Errorf("status while every gateway is down = %+v, want from file, stale, disconnected, an error", st)
	}
	if err := v2.WaitSynced(ctx); err == nil {
		t.Error("WaitSynced returned nil before any gateway answered")
	}
	if !bytes.Equal(v2.Digest(), v1.Digest()) {
		t.Error("the loaded view changed while no gateway answered")
	}

	// A gateway comes back (new process, new port) on the same topic, and
	// the topic moves on before the view reaches it.
	g2 := testkit.StartGateway(t, k, topic, testkit.Options{})
	testkit.Put(t, g2, "app/e", "5")
	testkit.Put(t, g2, "app/a", "1b")
	testkit.Delete(t, g2, "app/b")
	testkit.Put(t, g2, "other/y", "8")
	p.set(g2.Addr)
	waitSyncedFor(t, v2)
	after := converged(t, v2, g2, prefixes...)
	if got := testkit.Metric(t, g2, "confgate_gateway_resumes_total", "history"); got != 1 {
		t.Errorf("history resumes on the new gateway = %v, want 1", got)
	}
	for _, outcome := range []string{"diff", "reset"} {
		if got := testkit.Metric(t, g2, "confgate_gateway_resumes_total", outcome); got != 0 {
			t.Errorf("%s resumes = %v, want 0", outcome, got)
		}
	}
	if n := subscribeSnapshots(t, g2); n != 0 {
		t.Errorf("the gateway sent %v snapshots, want none", n)
	}
	if st := v2.Status(); st.Resets != 0 || st.FromFile {
		t.Errorf("status = %+v, want no reset, not from file", st)
	}
	var got []string
	for _, e := range rec.get() {
		got = append(got, e.Kind.String()+" "+e.Key)
	}
	if want := []string{"loaded ", "put app/e", "put app/a", "delete app/b"}; !slices.Equal(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
	if _, ok := after["app/b"]; ok {
		t.Error("app/b still at the gateway")
	}
	// The file follows the view.
	if err := v2.Close(); err != nil {
		t.Fatal(err)
	}
	if fc := fileCursor(t, path, prefixes...); fc != v2.Cursor() {
		t.Errorf("state file cursor %s after Close, view's %s", fc, v2.Cursor())
	}
}

func waitSyncedFor(t *testing.T, v *View) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), stackWait)
	defer cancel()
	if err := v.WaitSynced(ctx); err != nil {
		t.Fatalf("WaitSynced: %v", err)
	}
}

// TestStackEveryGatewayDown: while no gateway answers, the view keeps
// serving its last state and reports it as stale; when one returns, the
// view catches up with what changed meanwhile.
func TestStackEveryGatewayDown(t *testing.T) {
	prefixes := []string{"app/"}
	setup := func(t *testing.T) (*testkit.Kafka, string, *testkit.Gateway, *proxy, *View) {
		k := testkit.StartKafka(t)
		topic := testkit.Topic(t)
		g := testkit.StartGateway(t, k, topic, testkit.Options{})
		for _, kv := range [][2]string{{"app/a", "1"}, {"app/b", "2"}, {"other/x", "9"}} {
			testkit.Put(t, g, kv[0], kv[1])
		}
		p := startProxy(t)
		p.set(g.Addr)
		v := startView(t, Config{Addrs: []string{p.addr}, Prefixes: prefixes})
		waitSyncedFor(t, v)
		converged(t, v, g, prefixes...)
		return k, topic, g, p, v
	}
	// down checks the view while nothing answers.
	down := func(t *testing.T, v *View) {
		t.Helper()
		sum, n := v.Digest(), v.Len()
		r0 := v.Status().Reconnects
		testkit.Eventually(t, stackWait, "stale and retrying", func() bool {
			st := v.Status()
			return st.Stale && !st.Connected && st.Reconnects >= r0+3
		})
		if !bytes.Equal(v.Digest(), sum) || v.Len() != n {
			t.Fatal("the view changed while every gateway was down")
		}
		if e, ok := v.Get("app/a"); !ok || string(e.Value) != "1" {
			t.Errorf("app/a = %q, %v while down", e.Value, ok)
		}
	}

	t.Run("gateway restarted", func(t *testing.T) {
		k, topic, g1, p, v := setup(t)
		g1.Stop()
		p.set(g1.Addr) // the old address: connection refused
		down(t, v)
		// Writers do not need a gateway: produce straight to the topic.
		testkit.Produce(t, testkit.Producer(t, k, kgo.DefaultProduceTopic(topic)),
			&kgo.Record{Key: []byte("app/a"), Value: []byte("1-down")},
			&kgo.Record{Key: []byte("app/b")}, // tombstone
			&kgo.Record{Key: []byte("app/n"), Value: []byte("new")})
		down(t, v)
		g2 := testkit.StartGateway(t, k, topic, testkit.Options{})
		p.set(g2.Addr)
		view := converged(t, v, g2, prefixes...)
		if e, _ := v.Get("app/a"); string(e.Value) != "1-down" || len(view) != 2 {
			t.Errorf("after catching up: app/a = %q, %d entries", e.Value, len(view))
		}
		// The view resumed with its cursor. On Apache Kafka the new gateway
		// trusts the young records it read after the cursor (the log still
		// held their tombstones) and answers with a diff: no reset. The dev
		// broker gives it no timestamp bound to trust, so there: a reset.
		// A resume is counted once answered, maybe just after the view
		// converged.
		resumes := func() (sum float64) {
			for _, outcome := range []string{"history", "diff", "reset"} {
				sum += testkit.Metric(t, g2, "confgate_gateway_resumes_total", outcome)
			}
			return sum
		}
		testkit.Eventually(t, stackWait, "the view's resume counted (it subscribed with its cursor)", func() bool { return resumes() >= 1 })
		for _, outcome := range []string{"history", "diff", "reset"} {
			t.Logf("%s resumes on the new gateway: %v", outcome, testkit.Metric(t, g2, "confgate_gateway_resumes_total", outcome))
		}
		if k.Real() {
			if n := testkit.Metric(t, g2, "confgate_gateway_resumes_total", "diff"); n < 1 {
				t.Errorf("diff resumes %v: want the restarted stack to resume with a diff", n)
			}
			if n := v.Status().Resets; n != 0 {
				t.Errorf("view resets %d: want the restarted stack to resume with a diff", n)
			}
		}
	})

	t.Run("network cut", func(t *testing.T) {
		_, _, g, p, v := setup(t)
		p.set("")
		down(t, v)
		testkit.Put(t, g, "app/a", "1-cut")
		testkit.Delete(t, g, "app/b")
		testkit.Put(t, g, "app/n", "new")
		down(t, v)
		p.set(g.Addr)
		converged(t, v, g, prefixes...)
		if got := testkit.Metric(t, g, "confgate_gateway_resumes_total", "history"); got < 1 {
			t.Errorf("history resumes = %v, want the view to resume with deltas", got)
		}
		if n := subscribeSnapshots(t, g); n != 1 {
			t.Errorf("the gateway sent %v snapshots, want only the first", n)
		}
		if st := v.Status(); st.Resets != 0 {
			t.Errorf("Resets = %d", st.Resets)
		}
	})
}

// Observe sees every accepted message with its stream, and a resumed
// stream carries the cursor it resumed from.
func TestObserveTagsStreams(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	testkit.Put(t, g, "obs/a", "1")
	var mu sync.Mutex
	var seen []Observation
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	v, err := Subscribe(ctx, Config{Addrs: []string{g.Addr}, Prefixes: []string{"obs/"}, Observe: func(o Observation) {
		mu.Lock()
		seen = append(seen, o)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if err := v.WaitSynced(ctx); err != nil {
		t.Fatal(err)
	}
	testkit.Put(t, g, "obs/b", "2")
	testkit.Eventually(t, 10*time.Second, "the delta observed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, o := range seen {
			if o.Message.GetDelta() != nil {
				return true
			}
		}
		return false
	})
	mu.Lock()
	defer mu.Unlock()
	if seen[0].Stream != 1 || seen[0].ResumeCursor != nil || seen[0].Addr != g.Addr || seen[0].Message.GetSnapshotChunk() == nil {
		t.Fatalf("first observation %+v: want stream 1, no resume cursor, a snapshot chunk", seen[0])
	}
}

// A gateway that goes silent without closing the connection (host lost,
// network partition) is detected by keepalive pings: the view moves to
// another gateway and keeps receiving changes.
func TestStackKeepaliveLeavesSilentGateway(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	g1 := testkit.StartGateway(t, k, topic, testkit.Options{})
	g2 := testkit.StartGateway(t, k, topic, testkit.Options{})
	testkit.Put(t, g1, "app/a", "1")
	p1, p2 := startProxy(t), startProxy(t)
	p1.set(g1.Addr)
	p2.set(g2.Addr)
	var mu sync.Mutex
	var on string // the address of the view's current stream
	v := startView(t, Config{
		Addrs:            []string{p1.addr, p2.addr},
		Prefixes:         []string{"app/"},
		KeepaliveTime:    10 * time.Second, // gRPC's least
		KeepaliveTimeout: time.Second,
		Observe: func(o Observation) {
			mu.Lock()
			defer mu.Unlock()
			on = o.Addr
		},
	})
	waitSyncedFor(t, v)
	mu.Lock()
	silent, other, otherGW := p1, p2, g2
	if on == p2.addr {
		silent, other, otherGW = p2, p1, g1
	}
	mu.Unlock()
	r0 := v.Status().Reconnects
	silent.freeze()
	testkit.Put(t, otherGW, "app/a", "2")
	testkit.Eventually(t, 60*time.Second, "the view to leave the silent gateway", func() bool {
		e, ok := v.Get("app/a")
		return ok && string(e.Value) == "2"
	})
	mu.Lock()
	defer mu.Unlock()
	if on != other.addr {
		t.Errorf("the view is on %s, want %s", on, other.addr)
	}
	if st := v.Status(); st.Reconnects <= r0 || st.Resets != 0 {
		t.Errorf("Reconnects %d (was %d), Resets %d: want one move, with no reset", st.Reconnects, r0, st.Resets)
	}
}
