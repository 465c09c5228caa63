package client

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/confgate/confgate/internal/cursor"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

func TestSnapshotThenDeltas(t *testing.T) {
	a := ent("app/a", "1", 0, 0)
	b := ent("app/b", "2", 1, 0)
	c := ent("app/c", "3", 0, 1)
	x := ent("db/x", "9", 1, 1)
	b2 := ent("app/b", "2b", 1, 2)
	d := ent("app/d", "4", 0, 3)
	d.ContentType = "application/json"
	d.Headers = []*confgatev1.Header{{Key: "content-type", Value: []byte("application/json")}, {Key: "by", Value: []byte("ci")}}

	g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if call > 0 {
			return hold(ss)
		}
		err := send(ss,
			chunk(a, b), chunk(c), chunk(x), // several chunks, key order
			end(cur(2, 2), initial, a, b, c, x),
			delta(cur(4, 3), put(b2), del("app/c", 0, 2), put(d)),
			progress(cur(5, 3), 7, true),
		)
		if err != nil {
			return err
		}
		return hold(ss)
	})
	var rec recorder
	var digestAtSnapshot atomic.Value
	var v *View
	ready := make(chan struct{})
	v = startView(t, Config{
		Addrs:    []string{g.addr},
		Prefixes: []string{"db/", "app/", "app/x/"},
		OnChange: func(e Event) {
			<-ready
			if e.Kind == EventSnapshot {
				digestAtSnapshot.Store(v.Digest()) // the view is updated before the callback
			}
			rec.add(e)
		},
	})
	close(ready)
	waitSynced(t, v)
	want := cur(5, 3).String()
	eventually(t, "cursor of the progress message", func() bool { return v.Cursor() == want })

	req := g.request(t, 0)
	if got := req.GetSelector().GetPrefixes(); !slices.Equal(got, []string{"app/", "db/"}) {
		t.Errorf("selector sent = %q, want the normalized [app/ db/]", got)
	}
	if len(req.GetResumeCursor()) != 0 {
		t.Errorf("first request has resume cursor %x", req.GetResumeCursor())
	}

	if got, want := viewKeys(v, ""), []string{"app/a=1@0:0", "app/b=2b@1:2", "app/d=4@0:3", "db/x=9@1:1"}; !slices.Equal(got, want) {
		t.Errorf("view = %q, want %q", got, want)
	}
	if got, want := viewKeys(v, "app/"), []string{"app/a=1@0:0", "app/b=2b@1:2", "app/d=4@0:3"}; !slices.Equal(got, want) {
		t.Errorf("Range(app/) = %q, want %q", got, want)
	}
	if v.Len() != 4 {
		t.Errorf("Len = %d, want 4", v.Len())
	}
	if _, ok := v.Get("app/c"); ok {
		t.Error("deleted key app/c still in the view")
	}
	got, ok := v.Get("app/d")
	if !ok || got.ContentType != "application/json" || len(got.Headers) != 2 || got.Headers[1].Key != "by" || string(got.Headers[1].Value) != "ci" {
		t.Errorf("Get(app/d) = %+v, %v: metadata lost", got, ok)
	}
	if !bytes.Equal(v.Digest(), digestOf(a, b2, d, x)) {
		t.Errorf("digest after deltas = %x, want %x", v.Digest(), digestOf(a, b2, d, x))
	}
	if ds, _ := digestAtSnapshot.Load().([]byte); !bytes.Equal(ds, digestOf(a, b, c, x)) {
		t.Errorf("digest at snapshot = %x, want the snapshot end's %x", ds, digestOf(a, b, c, x))
	}

	var kinds []string
	for _, e := range rec.get() {
		kinds = append(kinds, e.Kind.String()+" "+e.Key)
	}
	if want := []string{"snapshot ", "put app/b", "delete app/c", "put app/d"}; !slices.Equal(kinds, want) {
		t.Errorf("events = %q, want %q", kinds, want)
	}
	if evs := rec.get(); len(evs) == 4 {
		if evs[0].Cursor != cur(2, 2).String() || evs[1].Cursor != cur(4, 3).String() {
			t.Errorf("event cursors = %q, %q", evs[0].Cursor, evs[1].Cursor)
		}
		if evs[1].Entry == nil || string(evs[1].Entry.Value) != "2b" || evs[2].Entry != nil {
			t.Errorf("event entries: put %+v, delete %+v", evs[1].Entry, evs[2].Entry)
		}
	}

	st := v.Status()
	if !st.Connected || st.Addr != g.addr || st.LagRecords != 7 || !st.Stale || st.Reconnects != 0 || st.LastError != nil {
		t.Errorf("status = %+v, want connected to %s, lag 7, stale (the gateway said so)", st, g.addr)
	}
}

func TestOlderVersionIgnored(t *testing.T) {
	g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if call > 0 {
			return hold(ss)
		}
		err := send(ss, append(snapshot(cur(10), initial, ent("k", "new", 0, 8), ent("j", "old", 0, 2)),
			delta(cur(11), put(ent("k", "older", 0, 5)), put(ent("j", "newer", 0, 10)), del("k", 0, 7)),
			delta(cur(12), put(ent("k", "same", 0, 8))))...)
		if err != nil {
			return err
		}
		return hold(ss)
	})
	v := startView(t, Config{Addrs: []string{g.addr}})
	waitSynced(t, v)
	eventually(t, "second delta", func() bool { return v.Cursor() == cur(12).String() })
	if got, want := viewKeys(v, ""), []string{"j=newer@0:10", "k=new@0:8"}; !slices.Equal(got, want) {
		t.Errorf("view = %q, want %q", got, want)
	}
	if !bytes.Equal(v.Digest(), digestOf(ent("j", "newer", 0, 10), ent("k", "new", 0, 8))) {
		t.Error("digest does not match the view")
	}
}

func TestResumeAfterDisconnect(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		switch {
		case call == 0:
			// Snapshot, one delta, then a clean end of stream (io.EOF).
			return send(ss, append(snapshot(cur(3), initial, ent("a", "1", 0, 0), ent("b", "2", 0, 1)),
				delta(cur(4), put(ent("a", "1b", 0, 3))))...)
		case down.Load():
			return status.Error(codes.Unavailable, "gateway restarting")
		}
		if err := send(ss, delta(cur(5), put(ent("c", "3", 0, 4)))); err != nil {
			return err
		}
		return hold(ss)
	})
	v := startView(t, Config{Addrs: []string{g.addr}})
	waitSynced(t, v)

	// Several refused attempts while the gateway is "down".
	g.request(t, 3)
	st := v.Status()
	if st.Connected || !st.Stale || st.Reconnects < 2 || status.Code(st.LastError) != codes.Unavailable {
		t.Errorf("status while down = %+v, want disconnected, stale, reconnecting, Unavailable", st)
	}
	if got, want := viewKeys(v, ""), []string{"a=1b@0:3", "b=2@0:1"}; !slices.Equal(got, want) {
		t.Errorf("view while down = %q, want the last-known-good %q", got, want)
	}
	if v.Cursor() != cur(4).String() {
		t.Errorf("cursor while down = %s, want %s", v.Cursor(), cur(4))
	}

	down.Store(false)
	eventually(t, "resumed delta", func() bool { return v.Cursor() == cur(5).String() })
	for i := 1; i < g.calls(); i++ {
		if rc := g.request(t, i).GetResumeCursor(); !bytes.Equal(rc, cur(4).Encode()) {
			t.Errorf("request %d resume cursor = %x, want the last applied %x", i, rc, cur(4).Encode())
		}
	}
	if got, want := viewKeys(v, ""), []string{"a=1b@0:3", "b=2@0:1", "c=3@0:4"}; !slices.Equal(got, want) {
		t.Errorf("view after resume = %q, want %q", got, want)
	}
	eventually(t, "fresh status", func() bool { st := v.Status(); return st.Connected && !st.Stale })
}

func TestFailover(t *testing.T) {
	t.Run("first address down", func(t *testing.T) {
		g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
			if err := send(ss, snapshot(cur(1), initial, ent("a", "1", 0, 0))...); err != nil {
				return err
			}
			return hold(ss)
		})
		down := downAddr(t)
		v := startView(t, Config{Addrs: []string{down, g.addr}})
		waitSynced(t, v)
		st := v.Status()
		if st.Addr != g.addr || st.Reconnects != 1 || status.Code(st.LastError) != codes.Unavailable {
			t.Errorf("status = %+v, want on %s after one failed attempt on %s", st, g.addr, down)
		}
	})
	t.Run("resume on the next gateway", func(t *testing.T) {
		g1 := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
			if call == 0 {
				return send(ss, snapshot(cur(2), initial, ent("a", "1", 0, 0), ent("b", "2", 0, 1))...)
			}
			return hold(ss)
		})
		g2 := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
			if err := send(ss, delta(cur(3), put(ent("a", "1b", 0, 2)))); err != nil {
				return err
			}
			return hold(ss)
		})
		v := startView(t, Config{Addrs: []string{g1.addr, g2.addr}})
		waitSynced(t, v)
		if rc := g2.request(t, 0).GetResumeCursor(); !bytes.Equal(rc, cur(2).Encode()) {
			t.Errorf("resume cursor on the second gateway = %x, want %x", rc, cur(2).Encode())
		}
		eventually(t, "delta from the second gateway", func() bool { return v.Cursor() == cur(3).String() })
		if e, _ := v.Get("a"); string(e.Value) != "1b" {
			t.Errorf("a = %q after failover", e.Value)
		}
		if st := v.Status(); st.Addr != g2.addr {
			t.Errorf("Addr = %s, want %s", st.Addr, g2.addr)
		}
	})
}

func TestResetReplacesView(t *testing.T) {
	tests := []struct {
		name   string
		second []*confgatev1.SubscribeResponse
		want   []string
		cursor cursor.Cursor
	}{
		{
			name:   "slow subscriber",
			second: snapshot(cur(6, 2), slow, ent("a", "1b", 0, 4), ent("d", "4", 1, 1)),
			want:   []string{"a=1b@0:4", "d=4@1:1"},
			cursor: cur(6, 2),
		},
		{
			name:   "state rebuilt behind the view",
			second: snapshot(cur(1), rebuilt, ent("a", "0", 0, 0)),
			want:   []string{"a=0@0:0"},
			cursor: cur(1),
		},
		{
			name:   "topic changed",
			second: snapshot(cursor.Cursor{Topic: topicB, Offsets: []int64{1}}, changed, ent("z", "26", 0, 0)),
			want:   []string{"z=26@0:0"},
			cursor: cursor.Cursor{Topic: topicB, Offsets: []int64{1}},
		},
		{
			name:   "empty snapshot",
			second: []*confgatev1.SubscribeResponse{end(cur(5, 5), expired)},
			want:   nil,
			cursor: cur(5, 5),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
				if call > 0 {
					return hold(ss)
				}
				first := snapshot(cur(3, 1), initial, ent("a", "1", 0, 0), ent("b", "2", 0, 1), ent("c", "3", 1, 0))
				if err := send(ss, append(first, tt.second...)...); err != nil {
					return err
				}
				return hold(ss)
			})
			var rec recorder
			v := startView(t, Config{Addrs: []string{g.addr}, OnChange: rec.add})
			eventually(t, "second snapshot", func() bool { return v.Cursor() == tt.cursor.String() })
			if got := viewKeys(v, ""); !slices.Equal(got, tt.want) {
				t.Errorf("view = %q, want %q", got, tt.want)
			}
			if _, ok := v.Get("b"); ok {
				t.Error("key b, absent from the second snapshot, is still in the view")
			}
			if v.Len() != len(tt.want) {
				t.Errorf("Len = %d, want %d", v.Len(), len(tt.want))
			}
			if !bytes.Equal(v.Digest(), tt.second[len(tt.second)-1].GetSnapshotEnd().GetDigest()) {
				t.Error("digest differs from the second snapshot's")
			}
			if st := v.Status(); st.Resets != 1 || st.Reconnects != 0 {
				t.Errorf("status = %+v, want one reset on the same stream", st)
			}
			eventually(t, "two events", func() bool { return len(rec.get()) == 2 })
			if evs := rec.get(); evs[0].Kind != EventSnapshot || evs[1].Kind != EventReset || evs[1].Cursor != tt.cursor.String() {
				t.Errorf("events = %+v, want snapshot then reset", evs)
			}
		})
	}
}

func TestCursorBehindNotApplied(t *testing.T) {
	other := cursor.Cursor{Topic: topicB, Offsets: []int64{9, 9}}
	tests := []struct {
		name string
		bad  []*confgatev1.SubscribeResponse
	}{
		{"delta behind", []*confgatev1.SubscribeResponse{delta(cur(5, 4), put(ent("k", "v2", 1, 3)))}},
		{"delta of another topic", []*confgatev1.SubscribeResponse{delta(other, put(ent("k", "v2", 1, 8)))}},
		{"progress behind", []*confgatev1.SubscribeResponse{progress(cur(4, 5), 0, false)}},
		{"snapshot behind", snapshot(cur(3, 5), initial, ent("k", "v0", 0, 1))},
		{"reset snapshot behind, history expired", snapshot(cur(3, 5), expired, ent("k", "v0", 0, 1))},
		{"change past its own cursor", []*confgatev1.SubscribeResponse{delta(cur(6, 5), put(ent("k", "v2", 0, 6)))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
				if call > 0 {
					return hold(ss)
				}
				msgs := append(snapshot(cur(5, 5), initial, ent("k", "v1", 0, 4)), tt.bad...)
				if err := send(ss, msgs...); err != nil {
					return err
				}
				return hold(ss)
			})
			v := startView(t, Config{Addrs: []string{g.addr}})
			waitSynced(t, v)
			// The client drops the stream and resumes from its own cursor.
			if rc := g.request(t, 1).GetResumeCursor(); !bytes.Equal(rc, cur(5, 5).Encode()) {
				t.Errorf("resume cursor = %x, want %x", rc, cur(5, 5).Encode())
			}
			if v.Cursor() != cur(5, 5).String() {
				t.Errorf("cursor = %s, want it unchanged %s", v.Cursor(), cur(5, 5))
			}
			if got := viewKeys(v, ""); !slices.Equal(got, []string{"k=v1@0:4"}) {
				t.Errorf("view = %q, want it unchanged", got)
			}
			if st := v.Status(); st.Resets != 0 || st.LastError == nil {
				t.Errorf("status = %+v, want no reset and the violation as LastError", st)
			}
		})
	}
}

func TestSnapshotCheckFailed(t *testing.T) {
	good := snapshot(cur(2), initial, ent("a", "1", 0, 0), ent("b", "2", 0, 1))
	badDigest := snapshot(cur(4), expired, ent("a", "1b", 0, 2), ent("b", "2", 0, 1))
	badDigest[len(badDigest)-1].GetSnapshotEnd().Digest = digestOf(ent("a", "1", 0, 0))
	badCount := snapshot(cur(4), expired, ent("a", "1b", 0, 2), ent("b", "2", 0, 1))
	badCount[len(badCount)-1].GetSnapshotEnd().EntryCount = 3
	tests := []struct {
		name string
		bad  []*confgatev1.SubscribeResponse
	}{
		{"digest mismatch", badDigest},
		{"entry count mismatch", badCount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
				switch call {
				case 0:
					if err := send(ss, append(good, tt.bad...)...); err != nil {
						return err
					}
				case 1:
					if err := send(ss, snapshot(cur(4), initial, ent("a", "1b", 0, 2), ent("b", "2", 0, 1))...); err != nil {
						return err
					}
				}
				return hold(ss)
			})
			v := startView(t, Config{Addrs: []string{g.addr}})
			if rc := g.request(t, 1).GetResumeCursor(); len(rc) != 0 {
				t.Errorf("resubscribed with cursor %x after a failed snapshot, want none", rc)
			}
			eventually(t, "good snapshot", func() bool { return v.Cursor() == cur(4).String() })
			if got, want := viewKeys(v, ""), []string{"a=1b@0:2", "b=2@0:1"}; !slices.Equal(got, want) {
				t.Errorf("view = %q, want %q", got, want)
			}
			// Later reconnects resume with a cursor again.
			if st := v.Status(); st.Resets != 1 {
				t.Errorf("Resets = %d, want 1", st.Resets)
			}
		})
	}
}

func TestInvalidArgument(t *testing.T) {
	t.Run("selector is permanent", func(t *testing.T) {
		g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
			return status.Error(codes.InvalidArgument, "selector prefix not allowed")
		})
		v := startView(t, Config{Addrs: []string{g.addr}})
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		err := v.WaitSynced(ctx)
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("WaitSynced = %v, want InvalidArgument", err)
		}
		select {
		case <-v.done:
		case <-ctx.Done():
			t.Fatal("subscription still running after a permanent error")
		}
		if st := v.Status(); status.Code(st.LastError) != codes.InvalidArgument || !st.Stale {
			t.Errorf("status = %+v", st)
		}
		if n := g.calls(); n != 1 {
			t.Errorf("%d Subscribe calls, want 1", n)
		}
	})
	t.Run("cursor is dropped", func(t *testing.T) {
		g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
			switch {
			case call == 0:
				return send(ss, snapshot(cur(2), initial, ent("a", "1", 0, 0), ent("b", "2", 0, 1))...)
			case len(req.GetResumeCursor()) > 0:
				return status.Error(codes.InvalidArgument, "resume cursor: unknown format")
			}
			if err := send(ss, snapshot(cur(3), initial, ent("a", "1b", 0, 2))...); err != nil {
				return err
			}
			return hold(ss)
		})
		v := startView(t, Config{Addrs: []string{g.addr}})
		waitSynced(t, v)
		if rc := g.request(t, 1).GetResumeCursor(); !bytes.Equal(rc, cur(2).Encode()) {
			t.Errorf("second request cursor = %x, want %x", rc, cur(2).Encode())
		}
		if rc := g.request(t, 2).GetResumeCursor(); len(rc) != 0 {
			t.Errorf("third request cursor = %x, want none", rc)
		}
		eventually(t, "fresh snapshot", func() bool { return v.Cursor() == cur(3).String() })
		if got := viewKeys(v, ""); !slices.Equal(got, []string{"a=1b@0:2"}) {
			t.Errorf("view = %q", got)
		}
	})
}

func TestWaitSyncedAndClose(t *testing.T) {
	g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		return hold(ss) // never sends a snapshot
	})
	v := startView(t, Config{Addrs: []string{g.addr}})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := v.WaitSynced(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitSynced = %v, want DeadlineExceeded", err)
	}
	g.request(t, 0)
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if err := v.WaitSynced(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("WaitSynced after Close = %v, want ErrClosed", err)
	}
	if v.Len() != 0 || v.Cursor() != "" {
		t.Error("unsynced view is not empty")
	}
}

func TestContextEndsSubscription(t *testing.T) {
	g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if err := send(ss, snapshot(cur(1), initial, ent("a", "1", 0, 0))...); err != nil {
			return err
		}
		return hold(ss)
	})
	ctx, cancel := context.WithCancel(t.Context())
	v, err := Subscribe(ctx, Config{Addrs: []string{g.addr}})
	if err != nil {
		t.Fatal(err)
	}
	waitSynced(t, v)
	cancel()
	select {
	case <-v.done:
	case <-time.After(5 * time.Second):
		t.Fatal("subscription still running after its context ended")
	}
	if e, ok := v.Get("a"); !ok || string(e.Value) != "1" {
		t.Error("view lost its state after the subscription ended")
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
}
