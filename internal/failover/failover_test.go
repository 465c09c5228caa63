//go:build kafkafaults

package failover_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confgate/confgate/client"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/history"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// subscriber is a Go client library view, every message it accepted
// recorded for the history checker through its Observe hook.
type subscriber struct {
	name     string
	prefixes []string
	view     *client.View
	log      *history.ClientLog
	stream   int // last stream seen; only the view's goroutine touches it
}

func startSubscriber(t *testing.T, rec *history.Recorder, name string, prefixes, addrs []string) *subscriber {
	t.Helper()
	s := &subscriber{name: name, prefixes: prefixes, log: rec.Client(name, prefixes)}
	v, err := client.Subscribe(context.Background(), client.Config{
		Addrs:      addrs,
		Prefixes:   prefixes,
		BackoffMin: 20 * time.Millisecond,
		BackoffMax: 500 * time.Millisecond,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Observe: func(o client.Observation) {
			if o.Stream != s.stream {
				s.stream = o.Stream
				var c cursor.Cursor
				if len(o.ResumeCursor) > 0 {
					c, _ = cursor.Decode(o.ResumeCursor)
				}
				s.log.Reconnect(c, o.Addr)
			}
			s.log.ObserveProto(o.Message)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.view = v
	t.Cleanup(func() { _ = v.Close() })
	return s
}

func (s *subscriber) at() cursor.Cursor {
	c, _ := cursor.Parse(s.view.Cursor())
	return c
}

func (s *subscriber) halt() { _ = s.view.Close() }

// writer puts and deletes continuously through addrs until stopped.
type writer struct {
	acked, failed atomic.Int64
	stop, done    chan struct{}
}

func startWriter(addrs []string) *writer {
	w := &writer{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		var clients []confgatev1.ConfigServiceClient
		for _, a := range addrs {
			conn, err := grpc.NewClient(a, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				panic(err)
			}
			defer conn.Close()
			clients = append(clients, confgatev1.NewConfigServiceClient(conn))
		}
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-time.After(15 * time.Millisecond):
			}
			key := fmt.Sprintf("%s/k%02d", []string{"a", "b", "c"}[i%3], i%25)
			cl := clients[i%len(clients)]
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			var err error
			if i%9 == 8 {
				_, err = cl.Delete(ctx, &confgatev1.DeleteRequest{Key: key})
			} else {
				_, err = cl.Put(ctx, &confgatev1.PutRequest{Key: key, Value: []byte(fmt.Sprint(i))})
			}
			cancel()
			if err != nil {
				w.failed.Add(1)
			} else {
				w.acked.Add(1)
			}
		}
	}()
	return w
}

func (w *writer) halt() { close(w.stop); <-w.done }

var selectors = [][]string{{"a/"}, {"b/"}, nil, {"a/", "c/"}, {"c/"}, nil}

// settle stops the writer, then waits until every gateway and subscriber
// reached the end of the log, and runs the history checker.
func settle(t *testing.T, k *testkit.Kafka, topic string, gws []*gatewayProc, w *writer, subs []*subscriber, rec *history.Recorder) {
	t.Helper()
	w.halt()
	log := k.ReadLog(t, topic)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td, err := k.Admin(t).ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	id := cursor.TopicID(td[topic].ID)
	end := history.LogEnd(log, id)
	for _, s := range subs {
		testkit.Eventually(t, 60*time.Second, s.name+" at the log's end", func() bool { return s.at().Covers(end) })
		s.halt()
	}
	final, err := history.StateAt(log, end, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := base64.RawURLEncoding.EncodeToString(history.Digest(final))
	for _, g := range gws {
		testkit.Eventually(t, 30*time.Second, g.name+" digest equal to the topic's", func() bool { return debugDigest(g) == want })
	}
	if err := rec.Check(log, id); err != nil {
		t.Fatalf("history check: %v", err)
	}
	total := 0
	for _, s := range subs {
		st := s.view.Status()
		t.Logf("%s %v: %d reconnects, %d reset snapshots", s.name, s.prefixes, st.Reconnects, st.Resets)
		total += st.Reconnects
	}
	t.Logf("%d records in the log, %d writes acknowledged, %d failed, %d reconnects in all", len(log), w.acked.Load(), w.failed.Load(), total)
}

func debugDigest(g *gatewayProc) string {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + g.admin + "/debug/state")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var st struct {
		Digest string `json:"digest"`
	}
	if json.NewDecoder(resp.Body).Decode(&st) != nil {
		return ""
	}
	return st.Digest
}

func startGateways(t *testing.T, topic string, n int, extra ...string) []*gatewayProc {
	t.Helper()
	var gws []*gatewayProc
	for i := range n {
		g := newGateway(t, fmt.Sprintf("g%d", i), topic, extra...)
		g.start()
		gws = append(gws, g)
	}
	return gws
}

func addrsOf(gws []*gatewayProc) []string {
	var out []string
	for _, g := range gws {
		out = append(out, g.addr)
	}
	return out
}

// chaos kills (SIGKILL) or stops (SIGTERM) a random gateway and restarts
// it, for d, never taking all of them down at once.
func chaos(t *testing.T, gws []*gatewayProc, d time.Duration, seed uint64) (kills, terms int) {
	rng := rand.New(rand.NewPCG(seed, seed))
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		time.Sleep(time.Duration(500+rng.IntN(1500)) * time.Millisecond)
		g := gws[rng.IntN(len(gws))]
		if rng.IntN(2) == 0 {
			g.kill()
			kills++
		} else {
			if err := g.term(); err != nil {
				t.Errorf("graceful stop of %s: %v", g.name, err)
			}
			terms++
		}
		time.Sleep(time.Duration(200+rng.IntN(800)) * time.Millisecond)
		g.start()
	}
	return kills, terms
}

func chaosTest(t *testing.T, viaLB bool) {
	k := &testkit.Kafka{Brokers: strings.Split(brokers(t), ",")}
	topic := testkit.Topic(t)
	gws := startGateways(t, topic, 3)
	addrs := addrsOf(gws)
	if viaLB {
		addrs = []string{startHAProxy(t, gws).addr}
	}
	rec := history.NewRecorder()
	w := startWriter(addrs)
	var subs []*subscriber
	for i, sel := range selectors {
		// Without a load balancer each client lists every gateway, in its
		// own order, and fails over itself.
		a := append(addrs[i%len(addrs):], addrs[:i%len(addrs)]...)
		subs = append(subs, startSubscriber(t, rec, fmt.Sprintf("client%d", i), sel, a))
	}
	testkit.Eventually(t, 30*time.Second, "writes", func() bool { return w.acked.Load() >= 50 })
	kills, terms := chaos(t, gws, 20*time.Second, 42)
	t.Logf("chaos: %d SIGKILL, %d SIGTERM, each followed by a restart", kills, terms)
	testkit.Eventually(t, 30*time.Second, "writes after chaos", func() bool { return w.acked.Load() >= 100 })
	settle(t, k, topic, gws, w, subs, rec)
}

// Three gateways behind HAProxy; gateways are killed and stopped at
// random while clients with different selectors stream and a writer
// writes. Every client's history checks out against the topic's log.
func TestChaosBehindLoadBalancer(t *testing.T) { chaosTest(t, true) }

// The same without a load balancer: clients fail over across the
// gateways' addresses themselves.
func TestChaosClientSideFailover(t *testing.T) { chaosTest(t, false) }

// A gateway stopped with SIGTERM sends GOAWAY and ends its streams with
// UNAVAILABLE; its clients resume elsewhere with no missed or repeated
// change, and without a snapshot.
func TestGracefulDrainMovesClients(t *testing.T) {
	k := &testkit.Kafka{Brokers: strings.Split(brokers(t), ",")}
	topic := testkit.Topic(t)
	gws := startGateways(t, topic, 3)
	lb := startHAProxy(t, gws)
	rec := history.NewRecorder()
	w := startWriter([]string{lb.addr})
	var subs []*subscriber
	for i, sel := range selectors {
		subs = append(subs, startSubscriber(t, rec, fmt.Sprintf("client%d", i), sel, []string{lb.addr}))
	}
	testkit.Eventually(t, 30*time.Second, "writes", func() bool { return w.acked.Load() >= 50 })
	before := gws[0].metric(`confgate_gateway_subscribers{method="Subscribe"}`)
	if before == 0 {
		t.Fatal("no subscriber on the gateway to drain: round robin should have put some there")
	}
	if err := gws[0].term(); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 30*time.Second, "writes after the drain", func() bool { return w.acked.Load() >= 120 })
	settle(t, k, topic, gws[1:], w, subs, rec)
	for _, s := range subs {
		if n := s.view.Status().Resets; n != 0 {
			t.Fatalf("%s was re-snapshotted %d times: a drain must resume from history", s.name, n)
		}
	}
	t.Logf("%v subscribers moved off the drained gateway", before)
}

// With a max connection age, long-lived streams move: gateways added later
// get their share of the connections.
func TestMaxConnectionAgeSpreadsStreams(t *testing.T) {
	k := &testkit.Kafka{Brokers: strings.Split(brokers(t), ",")}
	topic := testkit.Topic(t)
	age := []string{"--max-connection-age", "3s", "--max-connection-age-grace", "1s"}
	gws := []*gatewayProc{newGateway(t, "g0", topic, age...), newGateway(t, "g1", topic, age...), newGateway(t, "g2", topic, age...)}
	gws[0].start()
	lb := startHAProxy(t, gws)
	rec := history.NewRecorder()
	w := startWriter([]string{lb.addr})
	var subs []*subscriber
	for i := range 12 {
		subs = append(subs, startSubscriber(t, rec, fmt.Sprintf("client%d", i), selectors[i%len(selectors)], []string{lb.addr}))
	}
	sub := `confgate_gateway_subscribers{method="Subscribe"}`
	testkit.Eventually(t, 30*time.Second, "all streams on the only gateway", func() bool { return gws[0].metric(sub) == 12 })
	gws[1].start()
	gws[2].start()
	testkit.Eventually(t, 60*time.Second, "streams spread onto the new gateways", func() bool {
		return gws[1].metric(sub) >= 2 && gws[2].metric(sub) >= 2
	})
	t.Logf("streams per gateway: %v %v %v", gws[0].metric(sub), gws[1].metric(sub), gws[2].metric(sub))
	settle(t, k, topic, gws, w, subs, rec)
}
