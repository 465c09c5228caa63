package client

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// streamEnds collects OnStreamEnd calls (the first 64).
type streamEnds chan StreamEnd

func (s streamEnds) add(e StreamEnd) {
	select {
	case s <- e:
	default:
	}
}

// get returns the calls so far.
func (s streamEnds) get() []StreamEnd {
	var out []StreamEnd
	for {
		select {
		case e := <-s:
			out = append(out, e)
		default:
			for _, e := range out {
				s <- e
			}
			return out
		}
	}
}

// A view started at ResumeCursor asks for the changes after it, refuses a
// gateway going behind it (OnStreamEnd says so, and where it resumes), and
// applies what comes after it; Observe sees a deletion of a key the empty
// view never held.
func TestResumeCursor(t *testing.T) {
	g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		msgs := []*confgatev1.SubscribeResponse{progress(cur(6), 0, false), delta(cur(3), put(ent("k", "old", 0, 2)))}
		if call > 0 {
			msgs = []*confgatev1.SubscribeResponse{delta(cur(8), put(ent("k", "new", 0, 6)), del("gone", 0, 7))}
		}
		if err := send(ss, msgs...); err != nil {
			return err
		}
		return hold(ss)
	})
	ends := make(streamEnds, 64)
	var mu sync.Mutex
	var deletions []string
	v := startView(t, Config{Addrs: []string{g.addr}, ResumeCursor: cur(6).String(), OnStreamEnd: ends.add,
		Observe: func(o Observation) {
			mu.Lock()
			defer mu.Unlock()
			for _, c := range o.Message.GetDelta().GetChanges() {
				if d := c.GetDelete(); d != nil {
					deletions = append(deletions, d.GetKey())
				}
			}
		}})
	if v.Cursor() != cur(6).String() {
		t.Errorf("cursor before any gateway answered = %s, want ResumeCursor %s", v.Cursor(), cur(6))
	}
	eventually(t, "the delta after the cursor", func() bool { return v.Cursor() == cur(8).String() })
	for i := range g.calls() {
		if rc := g.request(t, i).GetResumeCursor(); !bytes.Equal(rc, cur(6).Encode()) {
			t.Errorf("request %d resume cursor = %x, want ResumeCursor's %x", i, rc, cur(6).Encode())
		}
	}
	if got := viewKeys(v, ""); len(got) != 1 || got[0] != "k=new@0:6" {
		t.Errorf("view = %q, want only the put after the cursor", got)
	}
	es := ends.get()
	if len(es) == 0 || es[0].Stopped || es[0].Addr != g.addr || es[0].NextAddr != g.addr ||
		es[0].ResumeCursor != cur(6).String() || !strings.Contains(es[0].Err.Error(), "behind") {
		t.Errorf("stream ends = %+v, want the refused delta behind, resuming from %s", es, cur(6))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(deletions) != 1 || deletions[0] != "gone" {
		t.Errorf("observed deletions = %q, want [gone]", deletions)
	}
}

func TestResumeCursorConfig(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"not a cursor", Config{ResumeCursor: "!"}, "ResumeCursor"},
		{"with a state file", Config{ResumeCursor: cur(1).String(), StateFile: t.TempDir() + "/s"}, "StateFile"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Addrs = []string{"127.0.0.1:1"}
			if _, err := Subscribe(t.Context(), tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Subscribe: %v, want an error naming %s", err, tt.want)
			}
		})
	}
}

// KeepAddrOrder: the first address is tried first, every time.
func TestKeepAddrOrder(t *testing.T) {
	serve := func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if err := send(ss, snapshot(cur(1), initial)...); err != nil {
			return err
		}
		return hold(ss)
	}
	first, second := startGateway(t, serve), startGateway(t, serve)
	for range 8 {
		v, err := Subscribe(t.Context(), Config{Addrs: []string{first.addr, second.addr}, KeepAddrOrder: true})
		if err != nil {
			t.Fatal(err)
		}
		waitSynced(t, v)
		_ = v.Close()
	}
	if n := second.calls(); n != 0 || first.calls() != 8 {
		t.Errorf("calls: first %d, second %d; want 8 and 0", first.calls(), n)
	}
}

// OnStreamEnd reports a permanent refusal as Stopped, and may end the
// subscription by cancelling its context.
func TestOnStreamEnd(t *testing.T) {
	t.Run("stopped", func(t *testing.T) {
		g := startGateway(t, func(int, *confgatev1.SubscribeRequest, stream) error {
			return status.Error(codes.InvalidArgument, "selector: no")
		})
		ends := make(streamEnds, 64)
		v := startView(t, Config{Addrs: []string{g.addr}, OnStreamEnd: ends.add})
		if err := v.WaitSynced(t.Context()); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("WaitSynced = %v, want INVALID_ARGUMENT", err)
		}
		es := ends.get()
		if len(es) != 1 || !es[0].Stopped || status.Code(es[0].Err) != codes.InvalidArgument || es[0].Backoff != 0 {
			t.Errorf("stream ends = %+v, want one, stopped, INVALID_ARGUMENT", es)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		g := startGateway(t, func(int, *confgatev1.SubscribeRequest, stream) error {
			return status.Error(codes.PermissionDenied, "no")
		})
		ctx, cancel := context.WithCancel(t.Context())
		ends := make(streamEnds, 64)
		v, err := Subscribe(ctx, Config{Addrs: []string{g.addr}, BackoffMin: time.Millisecond, BackoffMax: time.Millisecond,
			OnStreamEnd: func(e StreamEnd) {
				ends.add(e)
				if status.Code(e.Err) == codes.PermissionDenied {
					cancel()
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		if err := v.WaitSynced(t.Context()); err == nil {
			t.Fatal("WaitSynced = nil, want the cancelled context")
		}
		_ = v.Close()
		if n := g.calls(); n != 1 || len(ends.get()) != 1 {
			t.Errorf("%d calls, %d stream ends after cancelling in OnStreamEnd; want 1 and 1", n, len(ends.get()))
		}
	})
}
