package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Tests written for mutants of subscribe.go that lived (docs/testing.md,
// "Mutation score"). They drive a subscription directly, on a recording
// stream and a history held in memory.

// recStream is a Subscribe stream that decodes and keeps what is sent.
type recStream struct {
	ctx  context.Context
	msgs []*confgatev1.SubscribeResponse
	err  error // SendMsg fails with it, when set
}

func (r *recStream) SetHeader(metadata.MD) error  { return nil }
func (r *recStream) SendHeader(metadata.MD) error { return nil }
func (r *recStream) SetTrailer(metadata.MD)       {}
func (r *recStream) Context() context.Context     { return r.ctx }
func (r *recStream) RecvMsg(any) error            { return errors.New("no messages") }
func (r *recStream) SendMsg(m any) error {
	if r.err != nil {
		return r.err
	}
	var resp confgatev1.SubscribeResponse
	if err := proto.Unmarshal(m.(*frame).b, &resp); err != nil {
		return err
	}
	r.msgs = append(r.msgs, &resp)
	return nil
}

// memSource is a history of batches (Seq 1..n) held in memory.
type memSource struct {
	batches  []*store.Batch
	sinceErr error // Since fails with it, when set
	resume   store.Resume
	resumeE  error
	// snapErr, when set, is what WaitReady says: a subscription that
	// falls back to a snapshot (Snapshot is never ready here) ends with
	// errDraining instead of waiting.
	snapErr error
}

func (f *memSource) Ready() bool                         { return true }
func (f *memSource) WaitReady(ctx context.Context) error { return f.snapErr }
func (f *memSource) Changed() <-chan struct{}            { return make(chan struct{}) }
func (f *memSource) Status() store.Status                { return store.Status{Ready: true} }
func (f *memSource) Snapshot() (*store.Snapshot, error)  { return nil, store.ErrNotReady }
func (f *memSource) CheckInLog(context.Context, cursor.Cursor) error {
	return nil
}
func (f *memSource) Get(string) (*store.Entry, cursor.Cursor, bool, error) {
	return nil, cursor.Cursor{}, false, nil
}
func (f *memSource) Since(seq uint64, max int) ([]*store.Batch, error) {
	if f.sinceErr != nil {
		return nil, f.sinceErr
	}
	if int(seq) >= len(f.batches) {
		return nil, nil
	}
	return f.batches[seq:min(int(seq)+max, len(f.batches))], nil
}
func (f *memSource) ResumeFrom(c cursor.Cursor) (store.Resume, error) { return f.resume, f.resumeE }
func (f *memSource) WaitApplied(ctx context.Context, c cursor.Cursor) error {
	return nil
}
func (f *memSource) Produce(context.Context, store.Write) (int32, int64, cursor.Cursor, error) {
	return 0, 0, cursor.Cursor{}, errors.New("read-only")
}
func (f *memSource) Commit(context.Context, store.Commit) (store.CommitResult, error) {
	return store.CommitResult{}, store.ErrNotReady
}
func (f *memSource) Diff(string, cursor.Cursor, cursor.Cursor) ([]store.KeyDiff, cursor.Cursor, error) {
	return nil, cursor.Cursor{}, store.ErrNotReady
}
func (f *memSource) SchemaProblems() (map[string]string, map[string]string) { return nil, nil }
func (f *memSource) DigestsAt(_ keyspace.Selector, c []cursor.Cursor) ([]store.SelectedAt, []bool) {
	return make([]store.SelectedAt, len(c)), make([]bool, len(c))
}

var mutTopic = cursor.TopicID{9}

func mutCursor(offs ...int64) cursor.Cursor { return cursor.Cursor{Topic: mutTopic, Offsets: offs} }

func mutPut(key, value string, p int32, off int64) *store.Entry {
	return &store.Entry{Key: key, Value: []byte(value), Partition: p, Offset: off}
}

func mutBatch(seq uint64, end cursor.Cursor, changes ...*store.Entry) *store.Batch {
	return &store.Batch{Seq: seq, Changes: changes, End: end, EndBytes: end.Encode()}
}

// newMutSub is a subscription of sel on a gateway over src.
func newMutSub(t *testing.T, src Source, cfg Config, prefixes ...string) (*subscription, *recStream) {
	t.Helper()
	cfg.Source = src
	cfg.Logger = slog.New(slog.DiscardHandler)
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = time.Hour
	}
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	sel := mustSelector(t, prefixes...)
	grp := g.groups.acquire(sel)
	t.Cleanup(func() { g.groups.release(grp, g.m) })
	st := &recStream{ctx: context.Background()}
	return &subscription{g: g, stream: st, sel: sel, grp: grp, guard: &streamGuard{g: g}, wakeCh: make(chan struct{}, 1)}, st
}

// describe is the messages as "delta k1=v1,k2=- @cursor" lines ("-": a
// delete; "coalesced" marks a coalesced delta), "progress @cursor".
func describe(t *testing.T, msgs []*confgatev1.SubscribeResponse) []string {
	t.Helper()
	var out []string
	cur := func(b []byte) string {
		c, err := cursor.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(c.Offsets)
	}
	for _, m := range msgs {
		switch x := m.Message.(type) {
		case *confgatev1.SubscribeResponse_Delta:
			s := "delta "
			for i, c := range x.Delta.Changes {
				if i > 0 {
					s += ","
				}
				if p := c.GetPut(); p != nil {
					s += p.Key + "=" + string(p.Value)
				} else {
					s += c.GetDelete().Key + "=-"
				}
			}
			if x.Delta.Coalesced {
				s += " coalesced"
			}
			out = append(out, s+" @"+cur(x.Delta.Cursor))
		case *confgatev1.SubscribeResponse_Progress:
			out = append(out, "progress @"+cur(x.Progress.Cursor))
		default:
			out = append(out, "other")
		}
	}
	return out
}

func sameLines(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

var errNoSnapshot = errors.New("no snapshot here")

// doneErr: the caller's own cancellation is reported as such; only a
// drain, or no reason at all, is errDraining.
func TestDoneErr(t *testing.T) {
	s, _ := newMutSub(t, &memSource{}, Config{}, "a/")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.doneErr(ctx); status.Code(err) != codes.Canceled {
		t.Fatalf("cancelled caller: %v, want Canceled", err)
	}
	if err := s.doneErr(context.Background()); !errors.Is(err, errDraining) {
		t.Fatalf("live caller: %v, want errDraining", err)
	}
	close(s.g.draining)
	if err := s.doneErr(ctx); !errors.Is(err, errDraining) {
		t.Fatalf("draining: %v, want errDraining", err)
	}
}

// catchUp coalesces a backlog per key (latest wins), leaves out what the
// resume filter says the client has (offsets below it), and bounds what
// it collects: len(key)+32 per key plus every value read, at most twice
// MaxCoalescedBytes; past it the subscriber gets a snapshot.
func TestCatchUpCollects(t *testing.T) {
	var batches []*store.Batch
	for i := int64(0); i < 10; i++ {
		batches = append(batches, mutBatch(uint64(i+1), mutCursor(i+1), mutPut("a/kk", fmt.Sprintf("value-%014d", i), 0, i)))
	}
	// Estimated: one key (4+32) and ten values of 20 bytes: 236.
	const est = 4 + 32 + 10*20
	for _, tc := range []struct {
		name   string
		max    int
		more   int   // MaxPendingBatches: how many batches catchUp reads at a time, less one
		filter int64 // -1: none
		want   []string
		snap   bool
	}{
		{name: "exactly the bound", max: est / 2, filter: -1, want: []string{"delta a/kk=value-00000000000009 coalesced @[10]"}},
		{name: "past the bound", max: est/2 - 1, filter: -1, snap: true},
		{name: "filter at the last change", max: 1 << 20, filter: 9, want: []string{"delta a/kk=value-00000000000009 coalesced @[10]"}},
		{name: "filter past every change", max: 1 << 20, filter: 10, want: []string{"progress @[10]"}},
		{name: "one batch at a time", max: 1 << 20, more: 1, filter: -1, want: []string{"delta a/kk=value-00000000000009 coalesced @[10]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &memSource{batches: batches, snapErr: errNoSnapshot}
			more := 4
			if tc.more > 0 {
				more = tc.more
			}
			s, st := newMutSub(t, src, Config{MaxCoalescedBytes: tc.max, MaxPendingBatches: more}, "a/")
			s.at, s.atBytes = mutCursor(0), mutCursor(0).Encode()
			if tc.filter >= 0 {
				f := mutCursor(tc.filter)
				s.filter = &f
			}
			err := s.catchUp(context.Background(), batches[:2])
			if tc.snap {
				if !errors.Is(err, errDraining) {
					t.Fatalf("catchUp: %v, want a snapshot (errDraining here); sent %v", err, describe(t, st.msgs))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(t, st.msgs); !sameLines(got, tc.want) {
				t.Fatalf("sent %q, want %q", got, tc.want)
			}
			if s.pos != 10 || s.filter != nil || !s.at.Equal(mutCursor(10)) {
				t.Fatalf("after catchUp: pos %d, at %v, filter %v; want 10, [10], none", s.pos, s.at.Offsets, s.filter)
			}
		})
	}
}

// The filter of catchUp keeps a change exactly at the filter's offset
// (the client's cursor is the next offset it has not seen) and drops the
// one below it.
func TestCatchUpFilterEdge(t *testing.T) {
	batches := []*store.Batch{
		mutBatch(1, mutCursor(5), mutPut("a/old", "x", 0, 4)),
		mutBatch(2, mutCursor(6), mutPut("a/new", "y", 0, 5)),
	}
	src := &memSource{batches: batches, snapErr: errNoSnapshot}
	s, st := newMutSub(t, src, Config{MaxPendingBatches: 1}, "a/")
	f := mutCursor(5)
	s.filter = &f
	if err := s.catchUp(context.Background(), batches); err != nil {
		t.Fatal(err)
	}
	if got, want := describe(t, st.msgs), []string{"delta a/new=y coalesced @[6]"}; !sameLines(got, want) {
		t.Fatalf("sent %q, want %q", got, want)
	}
}

// The loop sends up to MaxPendingBatches pending batches one delta each,
// and coalesces a longer backlog; either way it goes on until the stream
// ends (here: its caller is gone).
func TestLoopPendingBound(t *testing.T) {
	mk := func(n int) []*store.Batch {
		var bs []*store.Batch
		for i := int64(0); i < int64(n); i++ {
			bs = append(bs, mutBatch(uint64(i+1), mutCursor(i+1), mutPut("a/k", fmt.Sprint("v", i), 0, i)))
		}
		return bs
	}
	for _, tc := range []struct {
		n    int
		want []string
	}{
		// At the bound: every change, the batches merged into one delta.
		{2, []string{"delta a/k=v0,a/k=v1 @[2]"}},
		{3, []string{"delta a/k=v2 coalesced @[3]"}},
	} {
		t.Run(fmt.Sprint(tc.n), func(t *testing.T) {
			src := &memSource{batches: mk(tc.n), snapErr: errNoSnapshot}
			s, st := newMutSub(t, src, Config{MaxPendingBatches: 2}, "a/")
			s.at, s.atBytes = mutCursor(0), mutCursor(0).Encode()
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			if err := s.loop(ctx); status.Code(err) != codes.Canceled {
				t.Fatalf("loop: %v, want Canceled once the backlog is sent", err)
			}
			if got := describe(t, st.msgs); !sameLines(got, tc.want) {
				t.Fatalf("sent %q, want %q", got, tc.want)
			}
		})
	}
}

// sendBatch after a resume from the change window: changes below the
// filter are left out, the cursor never goes below it, and the
// subscription moves past the batch; once the batch end covers the
// filter, the filter is cleared.
func TestSendBatchFiltered(t *testing.T) {
	b1 := mutBatch(1, mutCursor(2, 0), mutPut("a/x", "seen", 0, 0), mutPut("a/y", "new", 0, 1))
	b2 := mutBatch(2, mutCursor(2, 4), mutPut("a/z", "new", 1, 3))
	src := &memSource{batches: []*store.Batch{b1, b2}}
	s, st := newMutSub(t, src, Config{}, "a/")
	floor := mutCursor(1, 3)
	s.pos, s.at, s.atBytes, s.filter = 0, floor, floor.Encode(), &floor
	if err := s.sendBatch(b1); err != nil {
		t.Fatal(err)
	}
	if s.pos != 1 || s.filter == nil || !s.at.Equal(mutCursor(2, 3)) {
		t.Fatalf("after batch 1: pos %d, at %v, filter %v; want 1, [2 3], kept", s.pos, s.at.Offsets, s.filter)
	}
	if err := s.sendBatch(b2); err != nil {
		t.Fatal(err)
	}
	if s.pos != 2 || s.filter != nil || !s.at.Equal(mutCursor(2, 4)) {
		t.Fatalf("after batch 2: pos %d, at %v, filter %v; want 2, [2 4], cleared", s.pos, s.at.Offsets, s.filter)
	}
	if got, want := describe(t, st.msgs), []string{"delta a/y=new @[2 3]", "delta a/z=new @[2 4]"}; !sameLines(got, want) {
		t.Fatalf("sent %q, want %q", got, want)
	}
	st.err = errors.New("stream broken")
	s.filter = &floor
	if err := s.sendBatch(b2); !errors.Is(err, st.err) {
		t.Fatalf("sendBatch on a broken stream: %v, want its error", err)
	}
}

// What a subscription ends with when its source fails: an unexpected
// resume or history error is INTERNAL; a history gone (slow subscriber)
// or rebuilt falls back to a snapshot, whose failure (no snapshot here:
// errDraining) ends the stream.
func TestSubscriptionSourceErrors(t *testing.T) {
	boom := errors.New("boom")
	t.Run("resume", func(t *testing.T) {
		s, rec := newMutSub(t, &memSource{resumeE: boom}, Config{}, "a/")
		if err := s.resume(context.Background(), mutCursor(1)); status.Code(err) != codes.Internal {
			t.Fatalf("resume: %v, want Internal (sent %q)", err, describe(t, rec.msgs))
		}
	})
	t.Run("resume from the change window", func(t *testing.T) {
		s, rec := newMutSub(t, &memSource{resume: store.Resume{Kind: store.ResumeHistory, Seq: 3}}, Config{}, "a/")
		if err := s.resume(context.Background(), mutCursor(5)); err != nil {
			t.Fatalf("resume: %v", err)
		}
		if got, want := describe(t, rec.msgs), []string{"progress @[5]"}; !sameLines(got, want) {
			t.Fatalf("sent %q, want %q", got, want)
		}
		if s.pos != 3 || s.filter == nil || !s.filter.Equal(mutCursor(5)) {
			t.Fatalf("after the resume: pos %d, filter %v; want 3, [5]", s.pos, s.filter)
		}
	})
	for _, tc := range []struct {
		err  error
		want func(error) bool
	}{
		{boom, func(err error) bool { return status.Code(err) == codes.Internal }},
		{store.ErrHistoryGone, func(err error) bool { return errors.Is(err, errDraining) }},
		{store.ErrRebuilt, func(err error) bool { return errors.Is(err, errDraining) }},
	} {
		t.Run("since "+tc.err.Error(), func(t *testing.T) {
			s, rec := newMutSub(t, &memSource{sinceErr: tc.err, snapErr: errNoSnapshot}, Config{}, "a/")
			if err := s.loop(context.Background()); !tc.want(err) {
				t.Fatalf("loop: %v (sent %q)", err, describe(t, rec.msgs))
			}
		})
	}
}
