package testkit

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/digest"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/protobuf/proto"
)

// Stream reads a Subscribe stream in the background and keeps a view, the
// way a careful client would, checking the protocol as it goes.
type Stream struct {
	t      testing.TB
	cancel context.CancelFunc
	msgs   chan *confgatev1.SubscribeResponse
	errc   chan error

	// View is the materialized state; Cursor the last cursor received.
	View      map[string]*confgatev1.Entry
	Cursor    []byte
	Snapshots []*confgatev1.SnapshotEnd
	// Raw holds every message received, encoded, in order.
	Raw     [][]byte
	pending map[string]*confgatev1.Entry
	inSnap  bool
	Puts    int
	Deletes int
	// LastProgress is the latest progress message; Progresses counts them.
	LastProgress *confgatev1.Progress
	Progresses   int
}

// Subscribe opens a stream on g.
func Subscribe(t testing.TB, g *Gateway, req *confgatev1.SubscribeRequest) *Stream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := g.Client.Subscribe(ctx, req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s := &Stream{t: t, cancel: cancel, msgs: make(chan *confgatev1.SubscribeResponse, 1<<16), errc: make(chan error, 1), View: map[string]*confgatev1.Entry{}}
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				s.errc <- err
				close(s.msgs)
				return
			}
			s.msgs <- m
		}
	}()
	t.Cleanup(cancel)
	return s
}

// Close ends the stream.
func (s *Stream) Close() { s.cancel() }

// Next returns the next message, or an error (the stream's, or ErrTimeout).
func (s *Stream) Next(timeout time.Duration) (*confgatev1.SubscribeResponse, error) {
	select {
	case m, ok := <-s.msgs:
		if !ok {
			return nil, <-s.errc
		}
		s.apply(m)
		return m, nil
	case <-time.After(timeout):
		return nil, ErrTimeout
	}
}

func (s *Stream) apply(m *confgatev1.SubscribeResponse) {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	s.Raw = append(s.Raw, b)
	switch x := m.Message.(type) {
	case *confgatev1.SubscribeResponse_SnapshotChunk:
		if !s.inSnap {
			s.inSnap, s.pending = true, map[string]*confgatev1.Entry{}
		}
		for _, e := range x.SnapshotChunk.Entries {
			s.pending[e.Key] = e
		}
	case *confgatev1.SubscribeResponse_SnapshotEnd:
		if !s.inSnap {
			s.pending = map[string]*confgatev1.Entry{}
		}
		// Every snapshot after the first replaces what the client holds:
		// unflagged, a client could not tell it from a silent jump.
		if len(s.Snapshots) > 0 && !x.SnapshotEnd.Reset_ {
			s.t.Errorf("snapshot %d (reason %v) is not flagged reset", len(s.Snapshots)+1, x.SnapshotEnd.Reason)
		}
		if x.SnapshotEnd.Reset_ == (x.SnapshotEnd.Reason == confgatev1.SnapshotReason_SNAPSHOT_REASON_INITIAL) {
			s.t.Errorf("snapshot reset=%v with reason %v: a reset must say why, an initial snapshot is no reset", x.SnapshotEnd.Reset_, x.SnapshotEnd.Reason)
		}
		s.View, s.inSnap = s.pending, false
		s.Cursor = x.SnapshotEnd.Cursor
		s.Snapshots = append(s.Snapshots, x.SnapshotEnd)
		if uint64(len(s.View)) != x.SnapshotEnd.EntryCount {
			s.t.Errorf("snapshot_end says %d entries, got %d", x.SnapshotEnd.EntryCount, len(s.View))
		}
		if !bytes.Equal(DigestOf(s.View), x.SnapshotEnd.Digest) {
			s.t.Errorf("snapshot digest mismatch")
		}
	case *confgatev1.SubscribeResponse_Delta:
		for _, c := range x.Delta.Changes {
			switch ch := c.Change.(type) {
			case *confgatev1.Change_Put:
				s.View[ch.Put.Key] = ch.Put
				s.Puts++
			case *confgatev1.Change_Delete:
				delete(s.View, ch.Delete.Key)
				s.Deletes++
			}
		}
		s.Cursor = x.Delta.Cursor
	case *confgatev1.SubscribeResponse_Progress:
		s.Cursor = x.Progress.Cursor
		s.LastProgress = x.Progress
		s.Progresses++
	}
}

// Until reads messages until cond holds on the stream, bounded.
func (s *Stream) Until(timeout time.Duration, what string, cond func(*Stream) bool) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond(s) {
		left := time.Until(deadline)
		if left <= 0 {
			s.t.Fatalf("timed out after %s waiting for %s (view has %d keys)", timeout, what, len(s.View))
		}
		if _, err := s.Next(left); err != nil && err != ErrTimeout {
			s.t.Fatalf("stream ended while waiting for %s: %v", what, err)
		}
	}
}

// DigestOf computes the state digest of a view, as gateways do.
func DigestOf(view map[string]*confgatev1.Entry) []byte {
	var d digest.Digest
	for _, e := range view {
		d.Add(digest.Hash(e.Key, e.Value, e.GetVersion().GetPartition(), e.GetVersion().GetOffset()))
	}
	return d.Bytes()
}

// Values renders a view as key -> value text, for comparisons in tests.
func Values(view map[string]*confgatev1.Entry) map[string]string {
	out := make(map[string]string, len(view))
	for k, e := range view {
		out[k] = string(e.Value)
	}
	return out
}

// SortedKeys lists a view's keys.
func SortedKeys(view map[string]*confgatev1.Entry) []string {
	return slices.Sorted(maps.Keys(view))
}

// Put writes key=value through g, waits until g applied it, and fails the
// test on error.
func Put(t testing.TB, g *Gateway, key, value string) *confgatev1.PutResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	r, err := g.Client.Put(ctx, &confgatev1.PutRequest{Key: key, Value: []byte(value), WaitApplied: true})
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return r
}

// Delete deletes key through g and fails the test on error.
func Delete(t testing.TB, g *Gateway, key string) *confgatev1.DeleteResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	r, err := g.Client.Delete(ctx, &confgatev1.DeleteRequest{Key: key, WaitApplied: true})
	if err != nil {
		t.Fatalf("delete %s: %v", key, err)
	}
	return r
}

// Snapshot reads a whole GetSnapshot stream.
func Snapshot(t testing.TB, g *Gateway, prefixes ...string) (map[string]*confgatev1.Entry, *confgatev1.SnapshotEnd, [][]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := g.Client.GetSnapshot(ctx, &confgatev1.GetSnapshotRequest{Selector: &confgatev1.Selector{Prefixes: prefixes}})
	if err != nil {
		t.Fatal(err)
	}
	view := map[string]*confgatev1.Entry{}
	var raw [][]byte
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("snapshot ended without end marker: %v", err)
		}
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		raw = append(raw, b)
		switch x := m.Message.(type) {
		case *confgatev1.GetSnapshotResponse_Chunk:
			for _, e := range x.Chunk.Entries {
				if _, dup := view[e.Key]; dup {
					t.Fatalf("key %q twice in one snapshot", e.Key)
				}
				view[e.Key] = e
			}
		case *confgatev1.GetSnapshotResponse_End:
			if uint64(len(view)) != x.End.EntryCount {
				t.Fatalf("end says %d entries, got %d", x.End.EntryCount, len(view))
			}
			if !bytes.Equal(DigestOf(view), x.End.Digest) {
				t.Fatal(fmt.Sprintf("digest mismatch for %d entries", len(view)))
			}
			return view, x.End, raw
		}
	}
}
