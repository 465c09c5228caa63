package testkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confgate/confgate/fleet"
	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/node"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// BrokersEnv names real Kafka brokers for integration tests.
const BrokersEnv = "CONFGATE_KAFKA_BROKERS"

// Kafka is the broker tests run against.
type Kafka struct {
	Brokers []string
	// Fake is the dev broker, nil against real Kafka.
	Fake *kfake.Cluster
}

// Real reports whether this is a real Apache Kafka.
func (k *Kafka) Real() bool { return k.Fake == nil }

// StartKafka returns real Kafka when CONFGATE_KAFKA_BROKERS is set, else a
// fresh single-broker kfake cluster on 127.0.0.1.
func StartKafka(t testing.TB) *Kafka {
	t.Helper()
	if b := os.Getenv(BrokersEnv); b != "" {
		return &Kafka{Brokers: strings.Split(b, ",")}
	}
	return StartFake(t)
}

// StartFake always starts the dev broker, for tests that need its fault
// controls.
func StartFake(t testing.TB, opts ...kfake.Opt) *Kafka {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1)}, opts...)...)
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return &Kafka{Brokers: c.ListenAddrs(), Fake: c}
}

var topicSeq atomic.Int64

// Topic returns a topic name unique to this test run.
func Topic(t testing.TB) string {
	name := regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(t.Name(), "-")
	if len(name) > 80 {
		name = name[:80]
	}
	return fmt.Sprintf("cg-%s-%d-%d", strings.ToLower(name), time.Now().UnixNano()%1e9, topicSeq.Add(1))
}

// Gateway is a running store plus gateway.
type Gateway struct {
	Store    *store.Store
	GW       *gateway.Gateway
	Addr     string
	Admin    string
	Registry *prometheus.Registry
	Conn     *grpc.ClientConn
	Client   confgatev1.ConfigServiceClient
	cancel   context.CancelFunc
	done     <-chan struct{}
}

// Options tweak a gateway; zero fields keep test-friendly defaults.
type Options struct {
	Store   store.Config
	Gateway gateway.Config
	// Fleet, when set, runs the fleet view (node.Config.Fleet).
	Fleet *fleet.Config
	// NoWait returns before the store is ready.
	NoWait bool
}

// StartGateway starts a store and gateway on topic (created with 6
// partitions unless it exists) and waits until it is ready.
func StartGateway(t testing.TB, k *Kafka, topic string, o Options) *Gateway {
	t.Helper()
	sc := o.Store
	sc.Brokers, sc.Topic = k.Brokers, topic
	sc.CreateTopic = true
	if sc.ProbeInterval == 0 {
		sc.ProbeInterval = 200 * time.Millisecond
	}
	if sc.FetchMaxWait == 0 {
		sc.FetchMaxWait = 100 * time.Millisecond
	}
	if sc.Logger == nil {
		sc.Logger = Logger(t)
	}
	gc := o.Gateway
	if gc.ProgressInterval == 0 {
		gc.ProgressInterval = 200 * time.Millisecond
	}
	if gc.ShutdownGrace == 0 {
		gc.ShutdownGrace = 2 * time.Second
	}
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.Start(ctx, node.Config{Store: sc, Gateway: gc, Fleet: o.Fleet, Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", Logger: sc.Logger, Registry: reg})
	if err != nil {
		cancel()
		t.Fatalf("start gateway: %v", err)
	}
	g := &Gateway{Store: n.Store, GW: n.Gateway, Addr: n.GRPCAddr(), Admin: n.AdminAddr(), Registry: reg, cancel: cancel, done: n.Done()}
	st := n.Store
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(g.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	g.Conn, g.Client = conn, confgatev1.NewConfigServiceClient(conn)
	if !o.NoWait {
		wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer wcancel()
		if err := st.WaitReady(wctx); err != nil {
			t.Fatalf("gateway not ready: %v", err)
		}
	}
	return g
}

// Stop shuts the gateway down and waits; safe to call twice.
func (g *Gateway) Stop() {
	g.cancel()
	select {
	case <-g.done:
	case <-time.After(15 * time.Second):
	}
}

// Logger returns a logger that writes through t.Log at warn level, or
// discards with CONFGATE_TEST_QUIET.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("CONFGATE_TEST_VERBOSE") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Producer is a plain franz-go producer on the test's Kafka, for records
// written by something other than confgate.
func Producer(t testing.TB, k *Kafka, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.Brokers...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// Produce writes recs with cl and waits (10s at most) for Kafka's acks.
func Produce(t testing.TB, cl *kgo.Client, recs ...*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// Eventually polls cond every 10ms until it holds or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ErrTimeout is returned by Stream.Next when nothing arrived in time.
var ErrTimeout = errors.New("testkit: no message in time")

// Metric returns the value of the counter or gauge name in g's registry
// whose labels include labelValue ("" for an unlabelled metric); 0 when
// it has not been observed yet.
func Metric(t testing.TB, g *Gateway, name, labelValue string) float64 {
	t.Helper()
	mfs, err := g.Registry.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := labelValue == ""
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == labelValue {
					match = true
				}
			}
			if !match {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}

// SlowReaderClient connects to g with small fixed flow-control windows
// (64 KiB), so a stream that stops reading fills up at once instead of
// being buffered by the client; closed at cleanup.
func SlowReaderClient(t testing.TB, g *Gateway) confgatev1.ConfigServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(g.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return confgatev1.NewConfigServiceClient(conn)
}
