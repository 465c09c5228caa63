package client

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/digest"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// TestMain fails the run if any View or gRPC goroutine outlives the tests:
// every test closes its views and stops its fake gateways.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaks := waitNoLeaks(5 * time.Second); leaks != "" {
			fmt.Fprintf(os.Stderr, "goroutines leaked after the tests:\n%s\n", leaks)
			code = 1
		}
	}
	os.Exit(code)
}

// waitNoLeaks polls until no goroutine runs client or gRPC code, and
// returns the offending stacks if some remain after d.
func waitNoLeaks(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaks []string
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "google.golang.org/grpc") || strings.Contains(g, "client.(*View)") {
				leaks = append(leaks, g)
			}
		}
		if len(leaks) == 0 {
			return ""
		}
		if time.Now().After(deadline) {
			return strings.Join(leaks, "\n\n")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stream is the server side of one Subscribe call.
type stream = grpc.ServerStreamingServer[confgatev1.SubscribeResponse]

// script answers Subscribe call number call (0-based) of a fake gateway.
type script func(call int, req *confgatev1.SubscribeRequest, ss stream) error

// fakeGateway is a scripted ConfigService on 127.0.0.1 that records the
// Subscribe and Report requests it receives.
type fakeGateway struct {
	confgatev1.UnimplementedConfigServiceServer
	addr   string
	script script
	// answerReport answers Report call n (0-based), once recorded; nil:
	// UNIMPLEMENTED, as a gateway from before Report.
	answerReport func(n int, req *confgatev1.ReportRequest) error

	mu      sync.Mutex
	reqs    []*confgatev1.SubscribeRequest
	peers   []string // the client address of each Subscribe call
	reports []reportCall
}

// reportCall is one Report call a fake gateway received.
type reportCall struct {
	req  *confgatev1.ReportRequest
	at   time.Time
	peer string // the client address: the connection it came on
}

func startGateway(t *testing.T, sc script) *fakeGateway {
	t.Helper()
	return serveGateway(t, &fakeGateway{script: sc})
}

// startReportingGateway is startGateway with Report answered by answer
// (nil: OK).
func startReportingGateway(t *testing.T, sc script, answer func(n int, req *confgatev1.ReportRequest) error) *fakeGateway {
	t.Helper()
	if answer == nil {
		answer = func(int, *confgatev1.ReportRequest) error { return nil }
	}
	return serveGateway(t, &fakeGateway{script: sc, answerReport: answer})
}

func serveGateway(t *testing.T, g *fakeGateway) *fakeGateway {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = lis.Addr().String()
	srv := grpc.NewServer()
	confgatev1.RegisterConfigServiceServer(srv, g)
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	return g
}

func (g *fakeGateway) Subscribe(req *confgatev1.SubscribeRequest, ss stream) error {
	g.mu.Lock()
	call := len(g.reqs)
	g.reqs = append(g.reqs, req)
	g.peers = append(g.peers, peerAddr(ss.Context()))
	g.mu.Unlock()
	return g.script(call, req, ss)
}

func (g *fakeGateway) Report(ctx context.Context, req *confgatev1.ReportRequest) (*confgatev1.ReportResponse, error) {
	g.mu.Lock()
	n := len(g.reports)
	g.reports = append(g.reports, reportCall{req: req, at: time.Now(), peer: peerAddr(ctx)})
	g.mu.Unlock()
	if g.answerReport == nil {
		return g.UnimplementedConfigServiceServer.Report(ctx, req)
	}
	if err := g.answerReport(n, req); err != nil {
		return nil, err
	}
	return &confgatev1.ReportResponse{}, nil
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok {
		return p.Addr.String()
	}
	return ""
}

// reportCalls returns the Report calls received so far.
func (g *fakeGateway) reportCalls() []reportCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.reports)
}

// subscribePeer returns the client address of Subscribe call n.
func (g *fakeGateway) subscribePeer(t *testing.T, n int) string {
	t.Helper()
	g.request(t, n)
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.peers[n]
}

// waitReport waits for a Report call that satisfies cond and returns the
// first one, with the number of calls up to and including it.
func (g *fakeGateway) waitReport(t *testing.T, what string, cond func(*confgatev1.ReportRequest) bool) (reportCall, int) {
	t.Helper()
	var found reportCall
	var n int
	eventually(t, "a report with "+what, func() bool {
		for i, rc := range g.reportCalls() {
			if cond(rc.req) {
				found, n = rc, i+1
				return true
			}
		}
		return false
	})
	return found, n
}

func (g *fakeGateway) calls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.reqs)
}

// request waits for Subscribe call n and returns its request.
func (g *fakeGateway) request(t *testing.T, n int) *confgatev1.SubscribeRequest {
	t.Helper()
	eventually(t, fmt.Sprintf("Subscribe call %d on %s", n, g.addr), func() bool { return g.calls() > n })
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.reqs[n]
}

// downAddr returns a loopback address where nothing listens.
func downAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

// eventually polls cond until it holds, failing the test after a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// send sends msgs in order, then returns nil or the first error.
func send(ss stream, msgs ...*confgatev1.SubscribeResponse) error {
	for _, m := range msgs {
		if err := ss.Send(m); err != nil {
			return err
		}
	}
	return nil
}

// hold keeps the stream open until the client goes away or the server stops.
func hold(ss stream) error {
	<-ss.Context().Done()
	return nil
}

// recorder collects OnChange events.
type recorder struct {
	mu     sync.Mutex
	events []Event
}

func (r *recorder) add(e Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) get() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// startView subscribes with fast backoff, in address order, and closes the
// view when the test ends.
func startView(t *testing.T, cfg Config) *View {
	t.Helper()
	return startViewWith(t, cfg, nil)
}

// startViewWith is startView with settings changed by tweak.
func startViewWith(t *testing.T, cfg Config, tweak func(*settings)) *View {
	t.Helper()
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 20*time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	v, err := subscribe(t.Context(), cfg, tweak)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}

func waitSynced(t *testing.T, v *View) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := v.WaitSynced(ctx); err != nil {
		t.Fatalf("WaitSynced: %v", err)
	}
}

// Messages and their parts.

var topicA, topicB = cursor.TopicID{0xa}, cursor.TopicID{0xb}

func cur(offsets ...int64) cursor.Cursor { return cursor.Cursor{Topic: topicA, Offsets: offsets} }

func ent(key, value string, p int32, off int64) *confgatev1.Entry {
	return &confgatev1.Entry{Key: key, Value: []byte(value), Version: &confgatev1.Version{Partition: p, Offset: off}}
}

func chunk(es ...*confgatev1.Entry) *confgatev1.SubscribeResponse {
	return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_SnapshotChunk{
		SnapshotChunk: &confgatev1.SnapshotChunk{Entries: es}}}
}

// end closes a snapshot of es with a correct entry count and digest.
func end(c cursor.Cursor, reason confgatev1.SnapshotReason, es ...*confgatev1.Entry) *confgatev1.SubscribeResponse {
	return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_SnapshotEnd{
		SnapshotEnd: &confgatev1.SnapshotEnd{
			Cursor:     c.Encode(),
			Reason:     reason,
			Reset_:     reason != confgatev1.SnapshotReason_SNAPSHOT_REASON_INITIAL,
			EntryCount: uint64(len(es)),
			Digest:     digestOf(es...),
		}}}
}

// snapshot is one chunk per entry, then the end.
func snapshot(c cursor.Cursor, reason confgatev1.SnapshotReason, es ...*confgatev1.Entry) []*confgatev1.SubscribeResponse {
	var msgs []*confgatev1.SubscribeResponse
	for _, e := range es {
		msgs = append(msgs, chunk(e))
	}
	return append(msgs, end(c, reason, es...))
}

const (
	initial = confgatev1.SnapshotReason_SNAPSHOT_REASON_INITIAL
	expired = confgatev1.SnapshotReason_SNAPSHOT_REASON_HISTORY_EXPIRED
	changed = confgatev1.SnapshotReason_SNAPSHOT_REASON_TOPIC_CHANGED
	slow    = confgatev1.SnapshotReason_SNAPSHOT_REASON_SLOW_SUBSCRIBER
	rebuilt = confgatev1.SnapshotReason_SNAPSHOT_REASON_STATE_REBUILT
)

func delta(c cursor.Cursor, changes ...*confgatev1.Change) *confgatev1.SubscribeResponse {
	return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_Delta{
		Delta: &confgatev1.Delta{Changes: changes, Cursor: c.Encode()}}}
}

func put(e *confgatev1.Entry) *confgatev1.Change {
	return &confgatev1.Change{Change: &confgatev1.Change_Put{Put: e}}
}

func del(key string, p int32, off int64) *confgatev1.Change {
	return &confgatev1.Change{Change: &confgatev1.Change_Delete{Delete: &confgatev1.Deletion{
		Key: key, Version: &confgatev1.Version{Partition: p, Offset: off}}}}
}

func progress(c cursor.Cursor, lag int64, stale bool) *confgatev1.SubscribeResponse {
	return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_Progress{
		Progress: &confgatev1.Progress{Cursor: c.Encode(), LagRecords: lag, Stale: stale}}}
}

// digestOf computes the expected state digest independently of the client.
func digestOf(es ...*confgatev1.Entry) []byte {
	var d digest.Digest
	for _, e := range es {
		d.Add(digest.Hash(e.GetKey(), e.GetValue(), e.GetVersion().GetPartition(), e.GetVersion().GetOffset()))
	}
	return d.Bytes()
}

// viewKeys lists the view as "key=value@partition:offset" in Range order.
func viewKeys(v *View, prefix string) []string {
	var out []string
	v.Range(prefix, func(e Entry) bool {
		out = append(out, fmt.Sprintf("%s=%s@%d:%d", e.Key, e.Value, e.Partition, e.Offset))
		return true
	})
	return out
}
