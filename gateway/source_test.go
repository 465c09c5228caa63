package gateway_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// fakeSource serves a fixed history, for gateway tests without Kafka.
type fakeSource struct {
	topic   cursor.TopicID
	batches []*store.Batch // Seq 1..n
}

var _ gateway.Source = (*fakeSource)(nil)

func (f *fakeSource) head() cursor.Cursor { return f.batches[len(f.batches)-1].End }

func (f *fakeSource) Ready() bool                         { return true }
func (f *fakeSource) WaitReady(ctx context.Context) error { return nil }
func (f *fakeSource) Changed() <-chan struct{}            { return make(chan struct{}) }
func (f *fakeSource) Status() store.Status {
	return store.Status{Ready: true, Topic: f.topic, Cursor: f.head()}
}
func (f *fakeSource) Snapshot() (*store.Snapshot, error) { return nil, store.ErrNotReady }
func (f *fakeSource) CheckInLog(context.Context, cursor.Cursor) error {
	return nil
}
func (f *fakeSource) Get(string) (*store.Entry, cursor.Cursor, bool, error) {
	return nil, f.head(), false, nil
}
func (f *fakeSource) Since(seq uint64, max int) ([]*store.Batch, error) {
	if int(seq) >= len(f.batches) {
		return nil, nil
	}
	return f.batches[seq:min(int(seq)+max, len(f.batches))], nil
}
func (f *fakeSource) ResumeFrom(c cursor.Cursor) (store.Resume, error) {
	for i, b := range f.batches {
		if !c.Covers(b.End) {
			return store.Resume{Kind: store.ResumeHistory, Seq: uint64(i)}, nil
		}
	}
	return store.Resume{Kind: store.ResumeHistory, Seq: uint64(len(f.batches))}, nil
}
func (f *fakeSource) WaitApplied(ctx context.Context, c cursor.Cursor) error { return nil }
func (f *fakeSource) Produce(context.Context, store.Write) (int32, int64, cursor.Cursor, error) {
	return 0, 0, cursor.Cursor{}, errors.New("read-only")
}
func (f *fakeSource) Commit(context.Context, store.Commit) (store.CommitResult, error) {
	return store.CommitResult{}, errors.New("read-only")
}
func (f *fakeSource) Diff(string, cursor.Cursor, cursor.Cursor) ([]store.KeyDiff, cursor.Cursor, error) {
	return nil, cursor.Cursor{}, store.ErrNotReady
}
func (f *fakeSource) SchemaProblems() (map[string]string, map[string]string) { return nil, nil }
func (f *fakeSource) DigestsAt(_ keyspace.Selector, c []cursor.Cursor) ([]store.SelectedAt, []bool) {
	return make([]store.SelectedAt, len(c)), make([]bool, len(c))
}

// A client resuming on a gateway whose batches were cut differently than
// where its cursor came from must never receive a cursor behind its own,
// nor a change it already has.
func TestResumeAcrossDifferentBatchingNeverGoesBackwards(t *testing.T) {
	topic := cursor.TopicID{7}
	put := func(key string, p int32, off int64) *store.Entry {
		return &store.Entry{Key: key, Value: []byte(key), Partition: p, Offset: off}
	}
	mk := func(seq uint64, end []int64, changes ...*store.Entry) *store.Batch {
		c := cursor.Cursor{Topic: topic, Offsets: end}
		return &store.Batch{Seq: seq, Changes: changes, End: c, EndBytes: c.Encode()}
	}
	// This gateway applied p0:0, then p1:0 and p0:1 together, then p1:1.
	src := &fakeSource{topic: topic, batches: []*store.Batch{
		mk(1, []int64{1, 0}, put("a", 0, 0)),
		mk(2, []int64{2, 1}, put("b", 1, 0), put("c", 0, 1)),
		mk(3, []int64{2, 2}, put("d", 1, 1)),
	}}
	// The client's gateway applied p1:0 and p1:1 first: it holds b and d
	// (cursor p0:0 p1:2) but not a or c.
	resume := cursor.Cursor{Topic: topic, Offsets: []int64{0, 2}}

	gw, err := gateway.New(gateway.Config{Source: src, ProgressInterval: time.Hour, Logger: testkit.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); _ = gw.Serve(ctx, lis, nil) }()
	defer func() { cancel(); <-done }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	st, err := confgatev1.NewConfigServiceClient(conn).Subscribe(ctx, &confgatev1.SubscribeRequest{ResumeCursor: resume.Encode()})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	at := resume
	for !at.Equal(src.head()) {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		var cb []byte
		switch x := m.Message.(type) {
		case *confgatev1.SubscribeResponse_Delta:
			for _, c := range x.Delta.Changes {
				got = append(got, c.GetPut().Key)
			}
			cb = x.Delta.Cursor
		case *confgatev1.SubscribeResponse_Progress:
			cb = x.Progress.Cursor
		default:
			t.Fatalf("unexpected %v", m)
		}
		c, err := cursor.Decode(cb)
		if err != nil {
			t.Fatal(err)
		}
		if !c.Covers(at) {
			t.Fatalf("cursor went backwards: %v after %v", c.Offsets, at.Offsets)
		}
		at = c
	}
	if want := "[a c]"; fmtKeys(got) != want {
		t.Fatalf("resume delivered %v, want exactly the missed %s", got, want)
	}
}

func fmtKeys(k []string) string {
	s := "["
	for i, x := range k {
		if i > 0 {
			s += " "
		}
		s += x
	}
	return s + "]"
}
