package main

import (
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/confgate/confgate/internal/cursor"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// scriptedGateway is a ConfigService on 127.0.0.1 whose Subscribe calls are
// answered by a script, one function per call (the last one answers every
// later call). It records the requests.
type scriptedGateway struct {
	confgatev1.UnimplementedConfigServiceServer
	addr  string
	calls []func(*confgatev1.SubscribeRequest, grpc.ServerStreamingServer[confgatev1.SubscribeResponse]) error

	mu   sync.Mutex
	reqs []*confgatev1.SubscribeRequest
}

type subscribeStream = grpc.ServerStreamingServer[confgatev1.SubscribeResponse]

func startScriptedGateway(t *testing.T, calls ...func(*confgatev1.SubscribeRequest, subscribeStream) error) *scriptedGateway {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &scriptedGateway{addr: lis.Addr().String(), calls: calls}
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

func (g *scriptedGateway) Subscribe(req *confgatev1.SubscribeRequest, ss subscribeStream) error {
	g.mu.Lock()
	n := len(g.reqs)
	g.reqs = append(g.reqs, req)
	g.mu.Unlock()
	return g.calls[min(n, len(g.calls)-1)](req, ss)
}

func (g *scriptedGateway) requests() []*confgatev1.SubscribeRequest {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*confgatev1.SubscribeRequest(nil), g.reqs...)
}

// sendThenHold sends msgs, then keeps the stream open until the client
// leaves.
func sendThenHold(msgs ...*confgatev1.SubscribeResponse) func(*confgatev1.SubscribeRequest, subscribeStream) error {
	return func(_ *confgatev1.SubscribeRequest, ss subscribeStream) error {
		for _, m := range msgs {
			if err := ss.Send(m); err != nil {
				return err
			}
		}
		<-ss.Context().Done()
		return nil
	}
}

var watchTopic = cursor.TopicID{0xc0}

func at(offsets ...int64) cursor.Cursor { return cursor.Cursor{Topic: watchTopic, Offsets: offsets} }

func testEntry(key, value string, off int64) *confgatev1.Entry {
	return &confgatev1.Entry{Key: key, Value: []byte(value), Version: &confgatev1.Version{Partition: 0, Offset: off}}
}

func snapshotOf(c cursor.Cursor, es ...*confgatev1.Entry) []*confgatev1.SubscribeResponse {
	return []*confgatev1.SubscribeResponse{
		{Message: &confgatev1.SubscribeResponse_SnapshotChunk{SnapshotChunk: &confgatev1.SnapshotChunk{Entries: es}}},
		{Message: &confgatev1.SubscribeResponse_SnapshotEnd{SnapshotEnd: &confgatev1.SnapshotEnd{
			Cursor: c.Encode(), Reason: confgatev1.SnapshotReason_SNAPSHOT_REASON_INITIAL,
			EntryCount: uint64(len(es)), Digest: snapshotDigest(es),
		}}},
	}
}

func deltaOf(c cursor.Cursor, changes ...*confgatev1.Change) *confgatev1.SubscribeResponse {
	return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_Delta{
		Delta: &confgatev1.Delta{Cursor: c.Encode(), Changes: changes}}}
}

func putOf(e *confgatev1.Entry) *confgatev1.Change {
	return &confgatev1.Change{Change: &confgatev1.Change_Put{Put: e}}
}

func deleteOf(key string, off int64) *confgatev1.Change {
	return &confgatev1.Change{Change: &confgatev1.Change_Delete{Delete: &confgatev1.Deletion{
		Key: key, Version: &confgatev1.Version{Partition: 0, Offset: off}}}}
}

func progressOf(c cursor.Cursor) *confgatev1.SubscribeResponse {
	return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_Progress{
		Progress: &confgatev1.Progress{Cursor: c.Encode()}}}
}

// A gateway that sends a cursor behind what the watch already showed (a
// delta at cursor 3 after a snapshot at cursor 6) is dropped: the older
// state is never printed, and the watch resumes, from its own cursor, with
// what comes after it.
func TestWatchRefusesCursorBehind(t *testing.T) {
	t.Parallel()
	g := startScriptedGateway(t,
		sendThenHold(append(snapshotOf(at(6), testEntry("k", "new", 5)),
			deltaOf(at(3), putOf(testEntry("k", "old", 2))))...),
		sendThenHold(progressOf(at(6)), deltaOf(at(7), putOf(testEntry("k", "newer", 6)))),
	)
	r := cli{t: t, addr: g.addr}.run("watch", "-o", "json", "--count", "2")
	if r.code != 0 {
		t.Fatalf("watch exited %d: %s", r.code, r.stderr)
	}
	lines := jsonLines(t, r.stdout)
	if len(lines) != 3 || lines[0]["value"] != "new" || lines[1]["op"] != "snapshot_end" || lines[2]["value"] != "newer" {
		t.Fatalf("watch printed:\n%s\nwant the snapshot, its end and the put of \"newer\"; stderr: %s", r.stdout, r.stderr)
	}
	if !strings.Contains(r.stderr, "behind") || !strings.Contains(r.stderr, "reconnecting") {
		t.Errorf("stderr does not say the gateway was behind and dropped: %q", r.stderr)
	}
	reqs := g.requests()
	if len(reqs) < 2 || string(reqs[1].GetResumeCursor()) != string(at(6).Encode()) {
		t.Fatalf("the watch did not resume from the snapshot's cursor: %d requests", len(reqs))
	}
}

// The same with --from: the cursor the user gave is the floor. A deletion
// of a key the watch never showed is still a change after the cursor, and
// is printed.
func TestWatchFromRefusesCursorBehind(t *testing.T) {
	t.Parallel()
	g := startScriptedGateway(t,
		sendThenHold(progressOf(at(6)), deltaOf(at(3), putOf(testEntry("k", "old", 2)))),
		sendThenHold(deltaOf(at(8), putOf(testEntry("k", "newer", 6)), deleteOf("gone", 7))),
	)
	r := cli{t: t, addr: g.addr}.run("watch", "--from", at(6).String(), "--count", "2")
	if r.code != 0 {
		t.Fatalf("watch exited %d: %s", r.code, r.stderr)
	}
	want := "PUT k = newer  (p0@6)\nDELETE gone  (p0@7)\n"
	if r.stdout != want {
		t.Fatalf("watch --from printed:\n%s\nwant:\n%s\nstderr: %s", r.stdout, want, r.stderr)
	}
	if !strings.Contains(r.stderr, "behind") {
		t.Errorf("stderr does not say the gateway was behind: %q", r.stderr)
	}
	for i, req := range g.requests() {
		if string(req.GetResumeCursor()) != string(at(6).Encode()) {
			t.Errorf("request %d resumed from %s, want --from's cursor", i, cursorText(req.GetResumeCursor()))
		}
	}
}

// A watch that cannot stay connected keeps saying so on stderr and keeps
// trying, until --duration; a refusal that will not change (here
// PERMISSION_DENIED) ends it with the gateway's message.
func TestWatchPermanentRefusal(t *testing.T) {
	t.Parallel()
	g := startScriptedGateway(t, func(*confgatev1.SubscribeRequest, subscribeStream) error {
		return status.Error(codes.PermissionDenied, "not for you")
	})
	r := cli{t: t, addr: g.addr}.run("watch", "--duration", "10s")
	if r.code != exitFailure || r.stderr != "confgate: permission denied: not for you\n" {
		t.Fatalf("watch refused: code %d stderr %q", r.code, r.stderr)
	}
	if n := len(g.requests()); n != 1 {
		t.Errorf("%d Subscribe calls, want 1: a permanent refusal is not retried", n)
	}
}
