//go:build kafkafaults

package failover_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/history"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

const (
	countersRun       = 30 * time.Second // how long the writers write
	countersKillAt    = 10 * time.Second // one gateway kill -9'd ...
	countersRestartAt = 15 * time.Second // ... and restarted
	counterGateways   = 4
	counterWriters    = 20
	counterKeys       = 5
	// counterWriteDeadline bounds the retries of one request ID; a write
	// still unanswered then is resolved after the run (see resolve).
	counterWriteDeadline = 20 * time.Second
	counterCallTimeout   = 5 * time.Second
)

// dialGateways opens one connection per gateway, reconnecting quickly to
// a restarted one (gRPC's default backoff reaches minutes).
func dialGateways(t *testing.T, gws []*gatewayProc) []confgatev1.ConfigServiceClient {
	t.Helper()
	var out []confgatev1.ConfigServiceClient
	for _, g := range gws {
		conn, err := grpc.NewClient(g.addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 500 * time.Millisecond},
				MinConnectTimeout: time.Second,
			}))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		out = append(out, confgatev1.NewConfigServiceClient(conn))
	}
	return out
}

// retryable: the gateway was down, lost Kafka, or the call timed out; a
// write may or may not have landed, so it is retried with its request ID.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

func hasPreconditionFailure(err error, key string) bool {
	for _, d := range status.Convert(err).Details() {
		if pf, ok := d.(*confgatev1.PreconditionFailure); ok {
			for _, kv := range pf.GetKeys() {
				if kv.GetKey() == key {
					return true
				}
			}
		}
	}
	return false
}

// counterRun is the shared state of the counter writers.
type counterRun struct {
	t       *testing.T
	clients []confgatev1.ConfigServiceClient
	stop    chan struct{}

	ok, preconditionFailed, retries, duplicates, readRetries, resent atomic.Int64
	perCounter                                                       [counterKeys]atomic.Int64

	start     time.Time
	mu        sync.Mutex
	acks      []ackedPut
	cursor    cursor.Cursor // covers every successful write
	unknown   []*confgatev1.PutRequest
	unknownBy []int
}

// ackedPut is an acknowledged increment, for the report of one missing
// from the log.
type ackedPut struct {
	id, key, value, cond string
	version              *confgatev1.Version
	gw                   int
	at                   time.Duration
	dup                  bool
}

type putOutcome int

const (
	putOK putOutcome = iota
	putFailedPrecondition
	putUnknown
)

// put sends req through a random gateway, retrying the same request on
// another one while the answer is UNAVAILABLE (or the call timed out),
// until deadline.
func (r *counterRun) put(rng *rand.Rand, req *confgatev1.PutRequest, deadline time.Time) (putOutcome, *confgatev1.PutResponse, int) {
	last := -1
	for {
		i := rng.IntN(len(r.clients))
		if i == last {
			i = (i + 1 + rng.IntN(len(r.clients)-1)) % len(r.clients)
		}
		last = i
		ctx, cancel := context.WithTimeout(context.Background(), counterCallTimeout)
		resp, err := r.clients[i].Put(ctx, req)
		cancel()
		switch {
		case err == nil:
			return putOK, resp, i
		case status.Code(err) == codes.FailedPrecondition:
			if !hasPreconditionFailure(err, req.GetKey()) {
				r.t.Errorf("put %s (request %s): FAILED_PRECONDITION without a PreconditionFailure detail naming the key: %v", req.GetKey(), req.GetRequestId(), err)
			}
			return putFailedPrecondition, nil, i
		case retryable(err):
			r.retries.Add(1)
			if time.Now().After(deadline) {
				return putUnknown, nil, i
			}
			time.Sleep(time.Duration(10+rng.IntN(40)) * time.Millisecond)
		default:
			r.t.Errorf("put %s (request %s) through g%d: %v", req.GetKey(), req.GetRequestId(), i, err)
			return putUnknown, nil, i
		}
	}
}

// get reads key from a random gateway with min_cursor minCur, retrying
// elsewhere while the gateway is down or has not applied minCur. It
// returns nil for an absent key.
func (r *counterRun) get(rng *rand.Rand, key string, minCur []byte) (*confgatev1.Entry, error) {
	deadline := time.Now().Add(counterWriteDeadline)
	for {
		i := rng.IntN(len(r.clients))
		ctx, cancel := context.WithTimeout(context.Background(), counterCallTimeout)
		resp, err := r.clients[i].Get(ctx, &confgatev1.GetRequest{Key: key, MinCursor: minCur})
		cancel()
		switch {
		case err == nil:
			return resp.GetEntry(), nil
		case status.Code(err) == codes.NotFound:
			return nil, nil
		case retryable(err) && time.Now().Before(deadline):
			r.readRetries.Add(1)
			time.Sleep(time.Duration(10+rng.IntN(40)) * time.Millisecond)
		default:
			return nil, fmt.Errorf("get %s through g%d: %w", key, i, err)
		}
	}
}

func (r *counterRun) succeeded(c int, req *confgatev1.PutRequest, resp *confgatev1.PutResponse, gw int) {
	r.mu.Lock()
	r.acks = append(r.acks, ackedPut{id: req.GetRequestId(), key: req.GetKey(), value: string(req.GetValue()), cond: req.GetPrecondition().String(),
		version: resp.GetVersion(), gw: gw, at: time.Since(r.start), dup: resp.GetDuplicate()})
	r.mu.Unlock()
	r.ok.Add(1)
	r.perCounter[c].Add(1)
	if resp.GetDuplicate() {
		r.duplicates.Add(1)
	}
	cur, err := cursor.Decode(resp.GetCursor())
	if err != nil {
		r.t.Errorf("put answered a cursor that does not decode: %v", err)
		return
	}
	r.mu.Lock()
	r.cursor = cursor.Max(r.cursor, cur)
	r.mu.Unlock()
}

// writer increments random counters until stopped: read (its own writes
// included), then put value+1 conditional on the version read.
func (r *counterRun) writer(id int, done *sync.WaitGroup) {
	defer done.Done()
	rng := rand.New(rand.NewPCG(uint64(id), 7))
	var lastCur []byte
	for seq := 0; ; seq++ {
		select {
		case <-r.stop:
			return
		default:
		}
		c := rng.IntN(counterKeys)
		key := fmt.Sprintf("counters/c%d", c)
		e, err := r.get(rng, key, lastCur)
		if err != nil {
			r.t.Errorf("writer %d: %v", id, err)
			return
		}
		req := &confgatev1.PutRequest{Key: key, RequestId: fmt.Sprintf("w%02d-%d", id, seq)}
		if e == nil {
			req.Value = []byte("1")
			req.Precondition = &confgatev1.Precondition{Condition: &confgatev1.Precondition_Absent{Absent: true}}
		} else {
			n, err := strconv.Atoi(string(e.GetValue()))
			if err != nil {
				r.t.Errorf("writer %d: %s holds %q, not a count", id, key, e.GetValue())
				return
			}
			req.Value = []byte(strconv.Itoa(n + 1))
			req.Precondition = &confgatev1.Precondition{Condition: &confgatev1.Precondition_Version{Version: e.GetVersion()}}
		}
		switch out, resp, gw := r.put(rng, req, time.Now().Add(counterWriteDeadline)); out {
		case putOK:
			r.succeeded(c, req, resp, gw)
			lastCur = resp.GetCursor()
			if seq%10 == 9 {
				r.resend(rng, req, resp)
			}
		case putFailedPrecondition:
			r.preconditionFailed.Add(1)
		case putUnknown:
			r.mu.Lock()
			r.unknown = append(r.unknown, req)
			r.unknownBy = append(r.unknownBy, c)
			r.mu.Unlock()
		}
	}
}

// resend sends an acknowledged request again, as a client whose answer
// was lost would: the answer is a duplicate with the original version, and
// nothing is written (the final counts would show it).
func (r *counterRun) resend(rng *rand.Rand, req *confgatev1.PutRequest, first *confgatev1.PutResponse) {
	out, resp, _ := r.put(rng, req, time.Now().Add(counterWriteDeadline))
	switch {
	case out != putOK:
		r.t.Errorf("request %s sent again after it was acknowledged: outcome %d, want a duplicate", req.GetRequestId(), out)
	case !resp.GetDuplicate():
		r.t.Errorf("request %s sent again after it was acknowledged at %v: answered as a new write at %v", req.GetRequestId(), first.GetVersion(), resp.GetVersion())
	case resp.GetVersion().GetPartition() != first.GetVersion().GetPartition() || resp.GetVersion().GetOffset() != first.GetVersion().GetOffset():
		r.t.Errorf("request %s: duplicate names version %v, the write landed at %v", req.GetRequestId(), resp.GetVersion(), first.GetVersion())
	default:
		r.resent.Add(1)
	}
}

// resolve settles the writes whose outcome stayed unknown: retried with
// their request ID once every gateway is up, each either landed (an answer,
// a duplicate if it had) or did not (its precondition fails now).
func (r *counterRun) resolve() int {
	rng := rand.New(rand.NewPCG(99, 99))
	for i, req := range r.unknown {
		switch out, resp, gw := r.put(rng, req, time.Now().Add(60*time.Second)); out {
		case putOK:
			r.succeeded(r.unknownBy[i], req, resp, gw)
		case putUnknown:
			r.t.Errorf("request %s: still no answer after the run", req.GetRequestId())
		}
	}
	return len(r.unknown)
}

// Twenty writers increment five counters with conditional puts (the
// version they read, or absent), each through a random one of four
// gateways, retrying a write that got no answer with its request ID on
// another gateway; one gateway is kill -9'd and restarted meanwhile. Every
// counter ends equal to its number of acknowledged increments (no lost
// update, no increment applied twice), and the log shows no two
// conditional writes that both won (history rule 8).
func TestConditionalCounters(t *testing.T) {
	if testing.Short() {
		t.Skip("real Kafka and gateway processes: not in -short")
	}
	k := &testkit.Kafka{Brokers: strings.Split(brokers(t), ",")}
	topic := testkit.Topic(t)
	// Info: the serialization point's retries and every write's audit line,
	// for the report of an acknowledged write missing from the log.
	gws := startGateways(t, topic, counterGateways, "--log-level", "info")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	td, err := k.Admin(t).ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(td[topic].Partitions); n != 6 {
		t.Fatalf("topic has %d partitions, want 6", n)
	}

	rec := history.NewRecorder()
	var subs []*subscriber
	addrs := addrsOf(gws)
	for i := range gws {
		// Each starts on its own gateway and fails over to the others.
		a := append(append([]string(nil), addrs[i:]...), addrs[:i]...)
		subs = append(subs, startSubscriber(t, rec, fmt.Sprintf("sub-g%d", i), []string{"counters/"}, a))
	}

	r := &counterRun{t: t, clients: dialGateways(t, gws), stop: make(chan struct{}), start: time.Now()}
	var done sync.WaitGroup
	start := r.start
	for i := range counterWriters {
		done.Add(1)
		go r.writer(i, &done)
	}
	victim := gws[rand.IntN(len(gws))]
	time.Sleep(countersKillAt)
	okAtKill := r.ok.Load()
	victim.kill()
	t.Logf("%s kill -9'd at %s (%d increments so far)", victim.name, time.Since(start).Round(time.Millisecond), okAtKill)
	time.Sleep(time.Until(start.Add(countersRestartAt)))
	okWhileDown := r.ok.Load() - okAtKill
	victim.start()
	t.Logf("%s restarted, ready at %s; %d increments while it was down", victim.name, time.Since(start).Round(time.Millisecond), okWhileDown)
	time.Sleep(time.Until(start.Add(countersRun)))
	close(r.stop)
	done.Wait()
	if t.Failed() {
		t.FailNow()
	}
	unknown := r.resolve()
	if okWhileDown == 0 {
		t.Errorf("no increment succeeded while %s was down: the writers did not go on through the others", victim.name)
	}

	// Every counter, read from every gateway at a cursor covering every
	// acknowledged write, equals its number of acknowledged increments.
	minCur := r.cursor.Encode()
	var counts []string
	for c := range counterKeys {
		key := fmt.Sprintf("counters/c%d", c)
		want := r.perCounter[c].Load()
		counts = append(counts, fmt.Sprintf("%s=%d", key, want))
		for i, cl := range r.clients {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			resp, err := cl.Get(ctx, &confgatev1.GetRequest{Key: key, MinCursor: minCur})
			cancel()
			var got int64
			switch {
			case status.Code(err) == codes.NotFound:
			case err != nil:
				t.Fatalf("final read of %s from g%d: %v", key, i, err)
			default:
				if got, err = strconv.ParseInt(string(resp.GetEntry().GetValue()), 10, 64); err != nil {
					t.Fatalf("%s on g%d holds %q", key, i, resp.GetEntry().GetValue())
				}
			}
			if got != want {
				t.Errorf("%s on g%d is %d, but %d increments were acknowledged", key, i, got, want)
			}
		}
	}
	// What the serialization point did, on the gateways alive now (the
	// killed one's counts restarted with it).
	var fences, notReadBack float64
	for _, g := range gws {
		fences += g.metric("confgate_store_transaction_fences_total")
		notReadBack += g.metric("confgate_store_commits_not_read_back_total")
	}
	log, _ := finishRun(t, k, topic, gws, subs, rec)
	t.Logf("serialization point: %.0f fences; %.0f acknowledged commits not read back (aborted), each retried under its request ID", fences, notReadBack)
	conditional := 0
	for _, lr := range log {
		for _, h := range lr.Headers {
			if h.Key == "confgate-if" {
				conditional++
			}
		}
	}
	// Each acknowledged increment landed once, whether its own answer or a
	// retry's (duplicate) told: one conditional record each, no more.
	if int64(conditional) != r.ok.Load() {
		t.Errorf("%d conditional records in the log, but %d increments acknowledged (%d of them as duplicates)", conditional, r.ok.Load(), r.duplicates.Load())
	}
	r.explainMissing(k, topic, gws, log)
	t.Logf("%d writers, %d counters, %d gateways, %s: %d increments acknowledged (%s), %d precondition failures, %d write retries (same request ID), %d duplicates, %d read retries, %d outcomes resolved after the run, %d acknowledged requests sent again (all answered duplicate with their version); %d records in the log",
		counterWriters, counterKeys, counterGateways, countersRun, r.ok.Load(), strings.Join(counts, " "), r.preconditionFailed.Load(), r.retries.Load(), r.duplicates.Load(), r.readRetries.Load(), unknown, r.resent.Load(), len(log))
}

// explainMissing reports every acknowledged increment whose record is not
// in the log at the version its answer named: what the log holds there
// (read_committed), what was written there (read_uncommitted), and the
// gateways' log lines naming the request.
func (r *counterRun) explainMissing(k *testkit.Kafka, topic string, gws []*gatewayProc, log []testkit.LogRecord) {
	t := r.t
	t.Helper()
	at := map[[2]int64]testkit.LogRecord{}
	for _, lr := range log {
		at[[2]int64{int64(lr.Partition), lr.Offset}] = lr
	}
	missing := 0
	for _, a := range r.acks {
		lr, ok := at[[2]int64{int64(a.version.GetPartition()), a.version.GetOffset()}]
		if ok && lr.Key == a.key && string(lr.Value) == a.value && setIDOf(lr.Headers) == a.id {
			continue
		}
		missing++
		if missing > 10 {
			continue
		}
		got := "nothing"
		if ok {
			got = fmt.Sprintf("%s=%s (set %s)", lr.Key, lr.Value, setIDOf(lr.Headers))
		}
		t.Errorf("acknowledged put %s=%s (request %s, precondition %s) answered by g%d at %s (duplicate %v) with version %d:%d; the committed log holds %s there; read_uncommitted: %s\ngateway log lines naming it:\n%s",
			a.key, a.value, a.id, a.cond, a.gw, a.at.Round(time.Millisecond), a.dup, a.version.GetPartition(), a.version.GetOffset(), got,
			readUncommitted(t, k, topic, a.version.GetPartition(), a.version.GetOffset()), grepLogs(gws, a.id))
	}
	if missing > 0 {
		t.Errorf("%d acknowledged increments are not in the log at their version", missing)
	}
}

func setIDOf(hs []kgo.RecordHeader) string {
	for _, h := range hs {
		if h.Key == store.SetHeader {
			if m, ok := store.ParseSetMark(h.Value); ok {
				return m.ID
			}
		}
	}
	return ""
}

// readUncommitted describes the record at p:off read with read_uncommitted
// (aborted transactions' records included) and the control records after it.
func readUncommitted(t *testing.T, k *testkit.Kafka, topic string, p int32, off int64) string {
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {p: kgo.NewOffset().At(off)}}),
		kgo.FetchIsolationLevel(kgo.ReadUncommitted()), kgo.KeepControlRecords())
	if err != nil {
		return err.Error()
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []string
	for len(out) < 8 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			if len(out) >= 8 {
				return
			}
			if rec.Attrs.IsControl() {
				out = append(out, fmt.Sprintf("%d: control %x (producer %d epoch %d)", rec.Offset, rec.Key, rec.ProducerID, rec.ProducerEpoch))
			} else {
				out = append(out, fmt.Sprintf("%d: %s=%s set %s (producer %d epoch %d, txn %v)", rec.Offset, rec.Key, rec.Value, setIDOf(rec.Headers), rec.ProducerID, rec.ProducerEpoch, rec.Attrs.IsTransactional()))
			}
		})
	}
	return strings.Join(out, "; ")
}

// grepLogs returns the gateways' log lines naming needle, and each such
// gateway's other lines (not audit) within a second of them.
func grepLogs(gws []*gatewayProc, needle string) string {
	var b strings.Builder
	for _, g := range gws {
		data, err := os.ReadFile(g.log.Name())
		if err != nil {
			continue
		}
		lines := strings.Split(string(data), "\n")
		var around []time.Time
		for _, line := range lines {
			if strings.Contains(line, needle+" ") || strings.Contains(line, needle+"\"") || strings.HasSuffix(line, needle) {
				fmt.Fprintf(&b, "  %s: %s\n", g.name, line)
				if at, ok := logTime(line); ok {
					around = append(around, at)
				}
			}
		}
		for _, line := range lines {
			at, ok := logTime(line)
			if !ok || strings.Contains(line, "component=audit") {
				continue
			}
			for _, a := range around {
				if d := at.Sub(a); d > -time.Second && d < time.Second {
					fmt.Fprintf(&b, "  %s (within 1s): %s\n", g.name, line)
					break
				}
			}
		}
	}
	return b.String()
}

func logTime(line string) (time.Time, bool) {
	v, ok := strings.CutPrefix(line, "time=")
	if !ok {
		return time.Time{}, false
	}
	v, _, _ = strings.Cut(v, " ")
	at, err := time.Parse(time.RFC3339Nano, v)
	return at, err == nil
}
