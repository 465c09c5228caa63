package gateway_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

func TestSnapshotThenDeltas(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	for i := range 20 {
		testkit.Put(t, g, fmt.Sprintf("svc/a/k%02d", i), fmt.Sprintf("v%d", i))
	}
	testkit.Put(t, g, "other/x", "nope")
	last := testkit.Put(t, g, "svc/a/k00", "v0-new")

	s := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{Selector: &confgatev1.Selector{Prefixes: []string{"svc/"}}, ResumeCursor: nil})
	// The snapshot may or may not include the last put, but reading
	// through read-your-writes below makes the view converge.
	s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	if got := len(s.View); got != 20 {
		t.Fatalf("snapshot has %d entries, want 20", got)
	}
	if s.Snapshots[0].Reason != confgatev1.SnapshotReason_SNAPSHOT_REASON_INITIAL || s.Snapshots[0].Reset_ {
		t.Fatalf("first snapshot: reason %v reset %v", s.Snapshots[0].Reason, s.Snapshots[0].Reset_)
	}
	_ = last
	testkit.Put(t, g, "svc/a/k05", "changed")
	testkit.Put(t, g, "svc/b/new", "fresh")
	testkit.Put(t, g, "other/y", "not selected")
	testkit.Delete(t, g, "svc/a/k07")
	s.Until(10*time.Second, "deltas", func(s *testkit.Stream) bool {
		_, gone := s.View["svc/a/k07"]
		return string(s.View["svc/a/k05"].GetValue()) == "changed" && s.View["svc/b/new"] != nil && !gone
	})
	if _, ok := s.View["other/y"]; ok {
		t.Fatal("unselected key delivered")
	}
	if string(s.View["svc/a/k00"].GetValue()) != "v0-new" {
		t.Fatalf("k00 = %q", s.View["svc/a/k00"].GetValue())
	}
	// The view's digest equals the gateway's snapshot of the same selector.
	snap, end, _ := testkit.Snapshot(t, g, "svc/")
	s.Until(5*time.Second, "progress to the snapshot cursor", func(s *testkit.Stream) bool {
		return string(testkit.DigestOf(s.View)) == string(end.Digest)
	})
	if len(snap) != len(s.View) {
		t.Fatalf("snapshot %d keys, stream view %d", len(snap), len(s.View))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := g.Client.Get(ctx, &confgatev1.GetRequest{Key: "svc/b/new"})
	if err != nil || string(r.Entry.Value) != "fresh" {
		t.Fatalf("get: %v %v", r, err)
	}
}

// An idle subscriber gets progress: its cursor follows writes it did not
// select, so it resumes cheaply, and progress keeps coming while nothing
// changes, saying the gateway is caught up and fresh.
func TestProgressWhileIdle(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Gateway: gateway.Config{ProgressInterval: 50 * time.Millisecond}})
	testkit.Put(t, g, "quiet/a", "1")
	s := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{Selector: &confgatev1.Selector{Prefixes: []string{"quiet/"}}})
	s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })

	var last *confgatev1.PutResponse
	for i := range 5 {
		last = testkit.Put(t, g, fmt.Sprintf("busy/k%d", i), "x")
	}
	want, err := cursor.Decode(last.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	s.Until(10*time.Second, "progress past unselected writes", func(s *testkit.Stream) bool {
		if s.LastProgress == nil {
			return false
		}
		c, err := cursor.Decode(s.LastProgress.Cursor)
		return err == nil && c.Covers(want)
	})
	if s.Puts != 0 || s.Deletes != 0 || len(s.View) != 1 {
		t.Fatalf("unselected writes delivered: %d puts, %d deletes, view %d keys", s.Puts, s.Deletes, len(s.View))
	}

	// Nothing written: progress goes on, at the same cursor, caught up
	// (once the status shared by progress messages says so).
	s.Until(10*time.Second, "a caught-up progress", func(s *testkit.Stream) bool {
		return s.LastProgress.LagRecords == 0 && !s.LastProgress.Stale
	})
	n, at := s.Progresses, s.LastProgress.Cursor
	s.Until(10*time.Second, "progress while nothing changes", func(s *testkit.Stream) bool {
		p := s.LastProgress
		if !bytes.Equal(p.Cursor, at) || p.Stale || p.LagRecords != 0 {
			t.Fatalf("idle progress %v, want cursor %x, caught up and fresh (store %+v)", p, at, g.Store.Status())
		}
		return s.Progresses >= n+3
	})
}
