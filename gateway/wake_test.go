package gateway_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// A batch wakes only the streams whose selector it concerns; the others
// skip it without being woken, and their progress still moves past it.
func TestOnlyConcernedStreamsWake(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{Gateway: gateway.Config{ProgressInterval: 50 * time.Millisecond}})
	sub := func(prefix string) *testkit.Stream {
		s := testkit.Subscribe(t, g, &confgatev1.SubscribeRequest{Selector: &confgatev1.Selector{Prefixes: []string{prefix}}})
		s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
		return s
	}
	a := sub("a/")
	var others []*testkit.Stream
	for range 20 {
		others = append(others, sub("b/"), sub("ab/"))
	}
	before := testkit.Metric(t, g, "confgate_gateway_stream_wakeups_total", "")
	const writes = 30
	var last *confgatev1.PutResponse
	for i := range writes {
		last = testkit.Put(t, g, fmt.Sprintf("a/%d", i), "v")
		a.Until(10*time.Second, "the write", func(s *testkit.Stream) bool { return s.View[fmt.Sprintf("a/%d", i)] != nil })
	}
	// One stream on a/, woken at most once per batch; a batch holds one
	// or more of the writes.
	if woke := testkit.Metric(t, g, "confgate_gateway_stream_wakeups_total", "") - before; woke < 1 || woke > writes {
		t.Fatalf("%v stream wakeups for %d writes concerning one stream, want 1..%d", woke, writes, writes)
	}
	want, err := cursor.Decode(last.Cursor)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range others {
		s.Until(10*time.Second, "a progress past the writes", func(s *testkit.Stream) bool {
			c, err := cursor.Decode(s.Cursor)
			return err == nil && c.Covers(want)
		})
		if s.Puts != 0 {
			t.Fatalf("a stream of another prefix received %d puts", s.Puts)
		}
	}
}
