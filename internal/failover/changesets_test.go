//go:build kafkafaults

package failover_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/confgate/confgate/client"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/history"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
)

const (
	changeSetChaos   = 15 * time.Second // gateways killed and restarted
	changeSetWriters = 3
	// Each writer owns the groups g with g%changeSetWriters == its number,
	// so it knows which of its keys are live.
	changeSetGroups   = 12
	changeSetDeadline = 30 * time.Second // retries of one request ID
)

var setLetters = []string{"a", "b", "c", "d", "e", "f"}

// setSelectors keep every change set whole: a set writes keys of one
// group sets/<g>/, and a prefix selects a group's keys all or none.
var setSelectors = [][]string{nil, {"sets/"}, {"sets/1"}, {"sets/2", "sets/3"}, nil, {"sets/0", "sets/5"}}

// recordedDelta is a delta as a subscriber received it.
type recordedDelta struct {
	coalesced bool
	cursor    []byte
	changes   []history.Change
}

// setSubscriber is a subscriber that also keeps every delta it received.
type setSubscriber struct {
	*subscriber
	deltas []recordedDelta // only the view's goroutine appends, until halt
}

func startSetSubscriber(t *testing.T, rec *history.Recorder, name string, prefixes, addrs []string) *setSubscriber {
	t.Helper()
	s := &setSubscriber{subscriber: &subscriber{name: name, prefixes: prefixes, log: rec.Client(name, prefixes)}}
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
			if d := o.Message.GetDelta(); d != nil {
				rd := recordedDelta{coalesced: d.GetCoalesced(), cursor: d.GetCursor()}
				for _, ch := range d.GetChanges() {
					if p := ch.GetPut(); p != nil {
						rd.changes = append(rd.changes, history.Change{Key: p.GetKey(), Value: p.GetValue(), Partition: p.GetVersion().GetPartition(), Offset: p.GetVersion().GetOffset()})
					} else if del := ch.GetDelete(); del != nil {
						rd.changes = append(rd.changes, history.Change{Key: del.GetKey(), Partition: del.GetVersion().GetPartition(), Offset: del.GetVersion().GetOffset(), Deleted: true})
					}
				}
				s.deltas = append(s.deltas, rd)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	s.view = v
	t.Cleanup(func() { _ = v.Close() })
	return s
}

// setWriter applies change sets until stopped.
type setWriter struct {
	t        *testing.T
	id       int
	clients  []confgatev1.ConfigServiceClient
	seq      *atomic.Int64
	ackedAll *atomic.Int64 // acknowledged sets of every writer
	rng      *rand.Rand

	// live: keys known live; uncertain: keys written by a set whose
	// outcome stayed unknown. Only live keys are deleted, so every
	// operation changes the state and every subscriber must receive it.
	live, uncertain map[string]bool

	acked, duplicates, retries, unknown, resent, multiPartition int
	landed                                                      map[string][]*confgatev1.Version // acknowledged sets' versions
}

func (w *setWriter) run(stop <-chan struct{}, done *sync.WaitGroup) {
	defer done.Done()
	var groups []int
	for g := range changeSetGroups {
		if g%changeSetWriters == w.id {
			groups = append(groups, g)
		}
	}
	for {
		select {
		case <-stop:
			return
		default:
		}
		n := w.seq.Add(1)
		g := groups[w.rng.IntN(len(groups))]
		letters := w.rng.Perm(len(setLetters))[:2+w.rng.IntN(len(setLetters)-1)]
		slices.Sort(letters)
		req := &confgatev1.ApplyRequest{RequestId: fmt.Sprintf("set-%d", n)}
		for _, l := range letters {
			key := fmt.Sprintf("sets/%d/%s", g, setLetters[l])
			op := &confgatev1.Operation{Key: key, Value: []byte(fmt.Sprintf("set%d", n))}
			if w.live[key] && !w.uncertain[key] && w.rng.IntN(5) == 0 {
				op = &confgatev1.Operation{Key: key, Delete: true}
			}
			req.Operations = append(req.Operations, op)
		}
		resp, ok := w.apply(req)
		if !ok {
			w.unknown++
			for _, op := range req.Operations {
				w.uncertain[op.GetKey()] = true
			}
			continue
		}
		w.acked++
		w.ackedAll.Add(1)
		w.landed[req.GetRequestId()] = resp.GetVersions()
		if resp.GetDuplicate() {
			w.duplicates++
		}
		parts := map[int32]bool{}
		for i, op := range req.Operations {
			w.live[op.GetKey()] = !op.GetDelete()
			delete(w.uncertain, op.GetKey())
			parts[resp.GetVersions()[i].GetPartition()] = true
		}
		if len(parts) > 1 {
			w.multiPartition++
		}
		if n%10 == 0 {
			// As a client whose answer was lost: the same request again is
			// a duplicate with the original versions.
			again, ok := w.apply(req)
			switch {
			case !ok:
				w.t.Errorf("set %s sent again after it was acknowledged: no answer", req.GetRequestId())
			case !again.GetDuplicate():
				w.t.Errorf("set %s sent again after it was acknowledged at %v: written again at %v", req.GetRequestId(), resp.GetVersions(), again.GetVersions())
			case fmt.Sprint(again.GetVersions()) != fmt.Sprint(resp.GetVersions()):
				w.t.Errorf("set %s: duplicate names versions %v, the set landed at %v", req.GetRequestId(), again.GetVersions(), resp.GetVersions())
			default:
				w.resent++
			}
		}
	}
}

// apply sends req through a random gateway, again with the same request
// ID on another gateway while there is no answer, until the deadline.
func (w *setWriter) apply(req *confgatev1.ApplyRequest) (*confgatev1.ApplyResponse, bool) {
	deadline := time.Now().Add(changeSetDeadline)
	last := -1
	for {
		i := w.rng.IntN(len(w.clients))
		if i == last {
			i = (i + 1 + w.rng.IntN(len(w.clients)-1)) % len(w.clients)
		}
		last = i
		ctx, cancel := context.WithTimeout(context.Background(), counterCallTimeout)
		resp, err := w.clients[i].Apply(ctx, req)
		cancel()
		switch {
		case err == nil:
			if len(resp.GetVersions()) != len(req.GetOperations()) {
				w.t.Errorf("set %s of %d operations answered %d versions", req.GetRequestId(), len(req.GetOperations()), len(resp.GetVersions()))
				return nil, false
			}
			return resp, true
		case retryable(err):
			w.retries++
			if time.Now().After(deadline) {
				return nil, false
			}
			time.Sleep(time.Duration(10+w.rng.IntN(40)) * time.Millisecond)
		default:
			w.t.Errorf("apply %s through g%d: %v", req.GetRequestId(), i, err)
			return nil, false
		}
	}
}

// logSet is one change set as the log holds it.
type logSet struct {
	count int
	recs  []testkit.LogRecord
}

func selects(prefixes []string, key string) bool {
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

// checkDeltaSets asserts, independently of the history checker, that in
// every delta a subscriber received, each change set touched is there
// whole: every record of the set the subscriber selects, at its version
// (in a coalesced delta, a key may instead carry a later version, or be
// left out when it is absent at the delta's cursor). It returns the number
// of deltas, of set deliveries checked and of partial ones.
func checkDeltaSets(t *testing.T, subs []*setSubscriber, log []testkit.LogRecord, sets map[string]*logSet, setOf map[[2]int64]string) (deltas, deliveries, coalesced, partial int) {
	t.Helper()
	for _, s := range subs {
		for di, d := range s.deltas {
			deltas++
			if d.coalesced {
				coalesced++
			}
			// A delta may carry several records of a key (sets written one
			// after the other), in log order.
			got := map[string][]history.Change{}
			touched := map[string]bool{}
			for _, c := range d.changes {
				got[c.Key] = append(got[c.Key], c)
				id, ok := setOf[[2]int64{int64(c.Partition), c.Offset}]
				if !ok {
					t.Errorf("%s delta %d: %v is no change set's record", s.name, di, c)
					continue
				}
				touched[id] = true
			}
			var absentAt map[string]history.Change // state at the delta's cursor, when needed
			for id := range touched {
				deliveries++
				var missing []string
				for _, r := range sets[id].recs {
					if !selects(s.prefixes, r.Key) {
						continue
					}
					cs, ok := got[r.Key]
					switch {
					case slices.ContainsFunc(cs, func(c history.Change) bool { return c.Partition == r.Partition && c.Offset == r.Offset }):
						continue
					case d.coalesced && ok && cs[len(cs)-1].Partition == r.Partition && cs[len(cs)-1].Offset > r.Offset:
						continue
					case d.coalesced && !ok:
						if absentAt == nil {
							cur, err := cursor.Decode(d.cursor)
							if err != nil {
								t.Fatalf("%s delta %d: cursor: %v", s.name, di, err)
							}
							if absentAt, err = history.StateAt(log, cur, nil); err != nil {
								t.Fatal(err)
							}
						}
						if _, live := absentAt[r.Key]; !live {
							continue
						}
					}
					missing = append(missing, fmt.Sprintf("%s@%d:%d", r.Key, r.Partition, r.Offset))
				}
				if missing != nil {
					partial++
					t.Errorf("%s delta %d (coalesced %v) has part of change set %s (%d records): missing %v", s.name, di, d.coalesced, id, sets[id].count, missing)
				}
			}
		}
	}
	return deltas, deliveries, coalesced, partial
}

// ownKafka is a single-node Apache Kafka of the test's own (scripts/kafka.sh
// in a run directory of its own), so the test can restart its broker
// without disturbing the suite's.
type ownKafka struct {
	t       *testing.T
	script  string
	runDir  string
	brokers string
}

// ownRunDirPrefix names the run directories under .cache/kafka:
// run-failover-<pid of the test process>-<n>; a run killed before its
// cleanup is recognised by its dead pid and stopped by the next.
const ownRunDirPrefix = "run-failover-"

var ownKafkaSeq atomic.Int64

func startOwnKafka(t *testing.T) *ownKafka {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	k := &ownKafka{t: t, script: filepath.Join(root, "scripts", "kafka.sh")}
	base := filepath.Join(root, ".cache", "kafka")
	dirs, _ := filepath.Glob(filepath.Join(base, ownRunDirPrefix+"*"))
	for _, dir := range dirs {
		pidText, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(dir), ownRunDirPrefix), "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || strings.HasSuffix(dir, ".lock") || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		cmd := exec.Command(k.script, "down")
		cmd.Env = append(os.Environ(), "CONFGATE_KAFKA_RUN_DIR="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("stopping the abandoned cluster in %s: %v\n%s", dir, err, out)
			continue
		}
		os.RemoveAll(dir)
		os.Remove(dir + ".lock")
	}
	k.runDir = filepath.Join(base, fmt.Sprintf("%s%d-%d", ownRunDirPrefix, os.Getpid(), ownKafkaSeq.Add(1)))
	t.Cleanup(func() {
		k.run("down")
		if t.Failed() {
			t.Logf("kafka.sh run directory kept: %s", k.runDir)
			return
		}
		os.RemoveAll(k.runDir)
		os.Remove(k.runDir + ".lock")
	})
	line := strings.TrimSpace(k.run("up", "--port", "auto"))
	if !strings.HasPrefix(line, "CONFGATE_KAFKA_BROKERS=") {
		t.Fatalf("kafka.sh up printed %q", line)
	}
	k.brokers = strings.TrimPrefix(line, "CONFGATE_KAFKA_BROKERS=")
	return k
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func (k *ownKafka) run(args ...string) string {
	k.t.Helper()
	cmd := exec.Command(k.script, args...)
	cmd.Env = append(os.Environ(), "CONFGATE_KAFKA_RUN_DIR="+k.runDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		k.t.Fatalf("kafka.sh %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// Writers apply change sets of 2 to 6 keys (spread over the topic's
// partitions, one value per set, some deletes) with request IDs, retried
// on another gateway while unanswered, as gateways are killed (SIGKILL) and
// stopped (SIGTERM) and restarted, then as the broker (the test's own
// single node) is killed and restarted. Subscribers behind HAProxy and on the
// gateways directly never see part of a set: the history checker (rule 7)
// and a direct check of every delta agree, and every final view is the
// log's state.
func TestChaosChangeSets(t *testing.T) {
	if testing.Short() {
		t.Skip("real Kafka and gateway processes: not in -short")
	}
	own := startOwnKafka(t)
	k := &testkit.Kafka{Brokers: strings.Split(own.brokers, ",")}
	topic := testkit.Topic(t)
	var gws []*gatewayProc
	for i := range 3 {
		g := newGatewayOn(t, own.brokers, fmt.Sprintf("g%d", i), topic)
		g.start()
		gws = append(gws, g)
	}
	lb := startHAProxy(t, gws)
	addrs := addrsOf(gws)
	rec := history.NewRecorder()
	var subs []*setSubscriber
	var plain []*subscriber
	for i, sel := range setSelectors {
		a := []string{lb.addr}
		if i%2 == 1 {
			a = append(append([]string(nil), addrs[i%len(addrs):]...), addrs[:i%len(addrs)]...)
		}
		s := startSetSubscriber(t, rec, fmt.Sprintf("client%d", i), sel, a)
		subs = append(subs, s)
		plain = append(plain, s.subscriber)
	}

	clients := dialGateways(t, gws)
	var seq, acked atomic.Int64
	stop := make(chan struct{})
	var done sync.WaitGroup
	var writers []*setWriter
	for i := range changeSetWriters {
		w := &setWriter{t: t, id: i, clients: clients, seq: &seq, ackedAll: &acked, rng: rand.New(rand.NewPCG(uint64(i), 11)),
			live: map[string]bool{}, uncertain: map[string]bool{}, landed: map[string][]*confgatev1.Version{}}
		writers = append(writers, w)
		done.Add(1)
		go w.run(stop, &done)
	}
	testkit.Eventually(t, 30*time.Second, "change sets written", func() bool { return acked.Load() >= 30 })
	kills, terms := chaos(t, gws, changeSetChaos, 33)
	before := acked.Load()
	testkit.Eventually(t, 30*time.Second, "change sets after the gateway chaos", func() bool { return acked.Load() >= before+30 })
	// The broker: kill -9, and back on its data; writers retry meanwhile.
	own.run("kill-node", "1")
	down := time.Now()
	time.Sleep(time.Second)
	own.run("start-node", "1")
	before = acked.Load()
	testkit.Eventually(t, 60*time.Second, "change sets after the broker restart", func() bool { return acked.Load() >= before+30 })
	brokerOutage := time.Since(down)
	close(stop)
	done.Wait()
	if t.Failed() {
		t.FailNow()
	}

	log, _ := finishRun(t, k, topic, gws, plain, rec)

	sets := map[string]*logSet{}
	setOf := map[[2]int64]string{}
	for _, r := range log {
		var m store.SetMark
		ok := false
		for _, h := range r.Headers {
			if h.Key == store.SetHeader {
				m, ok = store.ParseSetMark(h.Value)
			}
		}
		if !ok {
			t.Fatalf("record %s at %d:%d carries no change-set mark", r.Key, r.Partition, r.Offset)
		}
		ls := sets[m.ID]
		if ls == nil {
			ls = &logSet{count: m.Count}
			sets[m.ID] = ls
		}
		ls.recs = append(ls.recs, r)
		setOf[[2]int64{int64(r.Partition), r.Offset}] = m.ID
	}
	for id, ls := range sets {
		if len(ls.recs) != ls.count {
			t.Errorf("change set %s: %d records in the log, its mark says %d", id, len(ls.recs), ls.count)
		}
	}
	var ackedSets, dups, retries, unknown, resent, multi int
	for _, w := range writers {
		ackedSets += w.acked
		dups += w.duplicates
		retries += w.retries
		unknown += w.unknown
		resent += w.resent
		multi += w.multiPartition
	}
	// Every acknowledged set is in the log whole, at the versions its
	// answer named.
	for _, w := range writers {
		for id, vs := range w.landed {
			ls := sets[id]
			if ls == nil {
				t.Errorf("change set %s was acknowledged at %v but is not in the log", id, vs)
				continue
			}
			for _, v := range vs {
				if setOf[[2]int64{int64(v.GetPartition()), v.GetOffset()}] != id {
					t.Errorf("change set %s was acknowledged with a record at %d:%d, which the log does not hold", id, v.GetPartition(), v.GetOffset())
				}
			}
		}
	}
	if ackedSets > len(sets) || len(sets) > ackedSets+unknown {
		t.Errorf("%d change sets in the log: %d acknowledged, %d without an answer", len(sets), ackedSets, unknown)
	}
	deltas, deliveries, coalesced, partial := checkDeltaSets(t, subs, log, sets, setOf)
	reconnects := 0
	for _, s := range subs {
		reconnects += s.view.Status().Reconnects
	}
	t.Logf("chaos: %d SIGKILL, %d SIGTERM of gateways, each followed by a restart; then the broker kill -9'd and restarted (30 sets acknowledged %s after the kill)", kills, terms, brokerOutage.Round(100*time.Millisecond))
	t.Logf("%d change sets in the log (%d records; %d acknowledged sets spanned several partitions), %d acknowledged (%d as duplicates after a retry), %d unanswered, %d write retries, %d acknowledged sets sent again (all duplicates)",
		len(sets), len(log), multi, ackedSets, dups, unknown, retries, resent)
	t.Logf("%d change sets, %d deltas (%d coalesced) to %d subscribers carrying %d set deliveries, %d partial; %d reconnects",
		len(sets), deltas, coalesced, len(subs), deliveries, partial, reconnects)
}
