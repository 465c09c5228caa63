//go:build kafkafaults

package brokerfaults_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/history"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// cluster is one scripts/kafka.sh cluster with its own run directory.
type cluster struct {
	t       *testing.T
	script  string
	runDir  string
	brokers []string
}

// runDirPrefix names the run directories of this package's clusters under
// .cache/kafka: run-faults-<pid of the test process>-<n>, so runs in the
// same tree at the same time never share one, and a run killed before its
// cleanup is recognised by its dead pid and stopped by the next.
const runDirPrefix = "run-faults-"

var clusterSeq atomic.Int64

// startCluster starts a cluster of nodes on ports scripts/kafka.sh picks
// (--port auto: free now, below the ephemeral range, picked again if a
// broker still loses one); restarts of its nodes keep those ports.
func startCluster(t *testing.T, nodes int) *cluster {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "scripts", "kafka.sh")
	base := filepath.Join(root, ".cache", "kafka")
	stopAbandoned(t, script, base)
	c := &cluster{t: t, script: script,
		runDir: filepath.Join(base, fmt.Sprintf("%s%d-%d", runDirPrefix, os.Getpid(), clusterSeq.Add(1)))}
	t.Cleanup(func() {
		c.run("down")
		if t.Failed() {
			t.Logf("kafka.sh run directory kept: %s", c.runDir)
			return
		}
		os.RemoveAll(c.runDir)
		os.Remove(c.runDir + ".lock")
	})
	out := c.run("up", "--nodes", fmt.Sprint(nodes), "--port", "auto")
	line := strings.TrimSpace(out)
	if !strings.HasPrefix(line, "CONFGATE_KAFKA_BROKERS=") {
		t.Fatalf("kafka.sh up printed %q", line)
	}
	c.brokers = strings.Split(strings.TrimPrefix(line, "CONFGATE_KAFKA_BROKERS="), ",")
	t.Logf("cluster of %d node(s) on %s (run directory %s)", nodes, strings.Join(c.brokers, ","), filepath.Base(c.runDir))
	return c
}

// stopAbandoned stops the clusters of earlier runs of this package whose
// test process is gone (killed before its cleanup ran) and removes their run
// directories; brokers started with setsid outlive the test process.
func stopAbandoned(t *testing.T, script, base string) {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(base, runDirPrefix+"*"))
	for _, dir := range dirs {
		name := strings.TrimPrefix(filepath.Base(dir), runDirPrefix)
		pidText, _, ok := strings.Cut(name, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || strings.HasSuffix(name, ".lock") || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		cmd := exec.Command(script, "down")
		cmd.Env = append(os.Environ(), "CONFGATE_KAFKA_RUN_DIR="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("stopping the abandoned cluster in %s: %v\n%s", dir, err, out)
			continue
		}
		t.Logf("stopped the abandoned cluster in %s (test process %d is gone)", filepath.Base(dir), pid)
		os.RemoveAll(dir)
		os.Remove(dir + ".lock")
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func (c *cluster) run(args ...string) string {
	c.t.Helper()
	cmd := exec.Command(c.script, args...)
	// Tests kill and restart brokers: replicas that miss 5s of fetches
	// leave the ISR so writes with acks=all go on with the rest.
	cmd.Env = append(os.Environ(), "CONFGATE_KAFKA_RUN_DIR="+c.runDir, "CONFGATE_KAFKA_PROPS=replica.lag.time.max.ms=5000")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("kafka.sh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// writer writes continuously through the gateways and remembers what was
// acknowledged.
type writer struct {
	mu     sync.Mutex
	acked  []*confgatev1.PutResponse
	ackKV  map[string]string // "p:off" -> key=value
	fails  map[codes.Code]int
	stop   chan struct{}
	done   chan struct{}
	failAt []time.Duration // how long failed writes took
}

func startWriter(gws []*testkit.Gateway) *writer {
	w := &writer{ackKV: map[string]string{}, fails: map[codes.Code]int{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			key := fmt.Sprintf("%s/w%02d", []string{"a", "b"}[i%2], i%20)
			val := fmt.Sprint(i)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			start := time.Now()
			var r *confgatev1.PutResponse
			var err error
			if i%7 == 6 {
				var d *confgatev1.DeleteResponse
				d, err = gws[i%len(gws)].Client.Delete(ctx, &confgatev1.DeleteRequest{Key: key})
				if err == nil {
					r = &confgatev1.PutResponse{Version: d.Version, Cursor: d.Cursor}
					val = "<deleted>"
				}
			} else {
				r, err = gws[i%len(gws)].Client.Put(ctx, &confgatev1.PutRequest{Key: key, Value: []byte(val)})
			}
			cancel()
			w.mu.Lock()
			if err != nil {
				w.fails[status.Code(err)]++
				w.failAt = append(w.failAt, time.Since(start))
			} else {
				w.acked = append(w.acked, r)
				w.ackKV[fmt.Sprintf("%d:%d", r.Version.Partition, r.Version.Offset)] = key + "=" + val
			}
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *writer) count() (ok, failed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, c := range w.fails {
		n += c
	}
	return len(w.acked), n
}

func (w *writer) halt() { close(w.stop); <-w.done }

type faultCase struct {
	name  string
	nodes int
	verb  string // stop-node (SIGTERM) or kill-node (SIGKILL)
	down  []int
	// outage: Kafka unusable while down (single node, or quorum lost).
	outage bool
}

func TestBrokerFaults(t *testing.T) {
	// Each case starts a cluster of its own on ports kafka.sh picks free
	// (other Kafkas and gateways may run on this machine).
	for _, tc := range []faultCase{
		{"one-node/SIGTERM", 1, "stop-node", []int{1}, true},
		{"one-node/SIGKILL", 1, "kill-node", []int{1}, true},
		{"three-nodes/SIGTERM-one", 3, "stop-node", []int{2}, false},
		{"three-nodes/SIGKILL-two", 3, "kill-node", []int{2, 3}, true},
	} {
		t.Run(tc.name, func(t *testing.T) { runFault(t, tc) })
	}
}

func runFault(t *testing.T, tc faultCase) {
	c := startCluster(t, tc.nodes)
	k := &testkit.Kafka{Brokers: c.brokers}
	topic := testkit.Topic(t)
	sc := store.Config{
		StaleAfter: 2 * time.Second, ProduceTimeout: 3 * time.Second, ProbeInterval: 300 * time.Millisecond,
		ReplicationFactor: int16(tc.nodes),
	}
	if tc.nodes == 3 {
		sc.TopicConfigs = map[string]string{"min.insync.replicas": "2"}
	}
	opts := testkit.Options{Store: sc, Gateway: gateway.Config{ProgressInterval: 200 * time.Millisecond}}
	gws := []*testkit.Gateway{testkit.StartGateway(t, k, topic, opts), testkit.StartGateway(t, k, topic, opts)}
	streams := []*testkit.Stream{
		testkit.Subscribe(t, gws[0], &confgatev1.SubscribeRequest{Selector: &confgatev1.Selector{Prefixes: []string{"a/"}}}),
		testkit.Subscribe(t, gws[0], &confgatev1.SubscribeRequest{}),
		testkit.Subscribe(t, gws[1], &confgatev1.SubscribeRequest{}),
	}
	for _, s := range streams {
		s.Until(30*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	}
	w := startWriter(gws)
	defer func() {
		select {
		case <-w.done:
		default:
			w.halt()
		}
	}()
	testkit.Eventually(t, 30*time.Second, "writes before the fault", func() bool { ok, _ := w.count(); return ok >= 30 })

	for _, n := range tc.down {
		c.run(tc.verb, fmt.Sprint(n))
	}
	okBefore, _ := w.count()
	if tc.outage {
		for i, g := range gws {
			testkit.Eventually(t, 20*time.Second, fmt.Sprintf("gateway %d stale", i), g.Store.Stale)
		}
		for i, g := range gws {
			// Health and metrics say stale; the gateway stays ready.
			body := httpGet(t, "http://"+g.Admin+"/healthz")
			if !strings.Contains(body, `"stale":true`) || !strings.Contains(body, `"ready":true`) {
				t.Fatalf("gateway %d /healthz while Kafka is down: %s", i, body)
			}
			if m := httpGet(t, "http://"+g.Admin+"/metrics"); !strings.Contains(m, "confgate_store_stale 1") {
				t.Fatalf("gateway %d metrics do not say stale", i)
			}
		}
		for i, s := range streams {
			s.Until(20*time.Second, fmt.Sprintf("stream %d told stale", i), func(s *testkit.Stream) bool {
				return s.LastProgress != nil && s.LastProgress.Stale
			})
		}
		// Reads keep working from the last state; writes fail fast.
		view, _, _ := testkit.Snapshot(t, gws[1])
		if len(view) == 0 {
			t.Fatal("no state served while Kafka is down")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		_, err := gws[0].Client.Put(ctx, &confgatev1.PutRequest{Key: "a/probe", Value: []byte("x")})
		cancel()
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "Kafka") {
			t.Fatalf("put while Kafka is down: %v, want UNAVAILABLE naming Kafka", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("put while Kafka is down took %s to fail; want fast", d)
		}
	} else {
		// One of three brokers away: Kafka stays usable and gateways
		// never say stale; writes go on once the ISR shrank.
		testkit.Eventually(t, 60*time.Second, "writes during the outage", func() bool {
			ok, _ := w.count()
			return ok >= okBefore+20
		})
		for i, g := range gws {
			if g.Store.Stale() {
				t.Errorf("gateway %d stale with two of three brokers up", i)
			}
		}
	}
	for _, n := range tc.down {
		c.run("start-node", fmt.Sprint(n))
	}
	for i, g := range gws {
		testkit.Eventually(t, 60*time.Second, fmt.Sprintf("gateway %d fresh again", i), func() bool { return !g.Store.Stale() })
	}
	okNow, _ := w.count()
	testkit.Eventually(t, 90*time.Second, "writes after recovery", func() bool { ok, _ := w.count(); return ok >= okNow+30 })
	w.halt()
	okTotal, failed := w.count()
	var slowest time.Duration
	for _, d := range w.failAt {
		slowest = max(slowest, d)
	}
	t.Logf("%d writes acknowledged, %d failed %v, slowest failure took %s", okTotal, failed, w.fails, slowest)

	// Every gateway reaches the end of the log; every stream reaches it.
	log := k.ReadLog(t, topic)
	end := history.LogEnd(log, gws[0].Store.Status().Topic)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i, g := range gws {
		if err := g.Store.WaitApplied(ctx, end); err != nil {
			t.Fatalf("gateway %d never applied the log's end %v: %v", i, end.Offsets, err)
		}
	}
	for i, s := range streams {
		s.Until(60*time.Second, fmt.Sprintf("stream %d at the log's end", i), func(s *testkit.Stream) bool {
			c, err := cursor.Decode(s.Cursor)
			return err == nil && c.Covers(end)
		})
	}

	// Nothing acknowledged was lost.
	inLog := map[string]string{}
	for _, r := range log {
		v := string(r.Value)
		if r.Tombstone {
			v = "<deleted>"
		}
		inLog[fmt.Sprintf("%d:%d", r.Partition, r.Offset)] = r.Key + "=" + v
	}
	for at, kv := range w.ackKV {
		if inLog[at] != kv {
			t.Fatalf("acknowledged write %s at %s missing from the log (log has %q)", kv, at, inLog[at])
		}
	}
	// Every gateway's state is exactly the topic's content.
	final, err := history.StateAt(log, end, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := history.Digest(final)
	for i, g := range gws {
		if got := g.Store.Status().Digest; !bytes.Equal(got, want) {
			t.Fatalf("gateway %d digest differs from the topic's content", i)
		}
	}
	// Every subscriber got every change after its snapshot, once, in order.
	prefixes := [][]string{{"a/"}, nil, nil}
	for i, s := range streams {
		checkStream(t, i, s, log, prefixes[i])
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkStream compares what a subscriber received after its snapshot with
// the log records after the snapshot's cursor that match its selector.
func checkStream(t *testing.T, i int, s *testkit.Stream, log []testkit.LogRecord, prefixes []string) {
	t.Helper()
	if len(s.Snapshots) != 1 {
		t.Fatalf("stream %d: %d snapshots; a broker outage must not reset subscribers", i, len(s.Snapshots))
	}
	start, err := cursor.Decode(s.Snapshots[0].Cursor)
	if err != nil {
		t.Fatal(err)
	}
	match := func(key string) bool {
		if len(prefixes) == 0 {
			return true
		}
		for _, p := range prefixes {
			if strings.HasPrefix(key, p) {
				return true
			}
		}
		return false
	}
	// A delete of a key that is not live changes nothing a reader can see,
	// and is not sent; liveness follows from the key's earlier records.
	want := map[int32][]string{}
	live := map[string]bool{}
	for _, r := range log {
		visible := !r.Tombstone || live[r.Key]
		live[r.Key] = !r.Tombstone
		if visible && r.Offset >= start.Offset(r.Partition) && match(r.Key) {
			want[r.Partition] = append(want[r.Partition], fmt.Sprintf("%s@%d", r.Key, r.Offset))
		}
	}
	got := map[int32][]string{}
	for _, raw := range s.Raw {
		var m confgatev1.SubscribeResponse
		if err := proto.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		d := m.GetDelta()
		if d == nil {
			continue
		}
		if d.Coalesced {
			t.Fatalf("stream %d was coalesced; it never stopped reading", i)
		}
		for _, ch := range d.Changes {
			var key string
			var v *confgatev1.Version
			if p := ch.GetPut(); p != nil {
				key, v = p.Key, p.Version
			} else {
				key, v = ch.GetDelete().Key, ch.GetDelete().Version
			}
			got[v.Partition] = append(got[v.Partition], fmt.Sprintf("%s@%d", key, v.Offset))
		}
	}
	for p := range want {
		if strings.Join(got[p], " ") != strings.Join(want[p], " ") {
			g, w := got[p], want[p]
			n := 0
			for n < len(g) && n < len(w) && g[n] == w[n] {
				n++
			}
			t.Fatalf("stream %d partition %d: first difference at change %d: got %v, want %v (got %d changes, log has %d)",
				i, p, n, tail(g, n), tail(w, n), len(g), len(w))
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Fatalf("stream %d: changes in partition %d the log does not have", i, p)
		}
	}
	selected, err := history.StateAt(log, history.LogEnd(log, start.Topic), prefixes)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(testkit.DigestOf(s.View), history.Digest(selected)) {
		t.Fatalf("stream %d: final view differs from the topic's content", i)
	}
}

func tail(s []string, n int) []string {
	if n >= len(s) {
		return nil
	}
	return s[n:min(len(s), n+3)]
}
