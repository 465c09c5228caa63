package gateway_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// pausableDialer hands franz-go connections whose reads block while paused:
// the gateway's Kafka fetches are delayed without touching the broker.
type pausableDialer struct {
	mu     sync.Mutex
	paused bool
	resume chan struct{}
}

func newPausableDialer() *pausableDialer { return &pausableDialer{resume: make(chan struct{})} }

func (d *pausableDialer) pause() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.paused {
		d.paused, d.resume = true, make(chan struct{})
	}
}

func (d *pausableDialer) unpause() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.paused {
		d.paused = false
		close(d.resume)
	}
}

func (d *pausableDialer) gate() {
	d.mu.Lock()
	paused, ch := d.paused, d.resume
	d.mu.Unlock()
	if paused {
		<-ch
	}
}

func (d *pausableDialer) dial(ctx context.Context, network, host string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, host)
	if err != nil {
		return nil, err
	}
	return &pausableConn{Conn: c, d: d}, nil
}

type pausableConn struct {
	net.Conn
	d *pausableDialer
}

// Read holds what it read while paused, so a fetch already waiting on
// the broker when pause is called is delayed too.
func (c *pausableConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.d.gate()
	return n, err
}

// Invariant 3: a client resuming with a cursor a gateway has not reached
// gets nothing older: the gateway waits for its Kafka reads to catch up,
// or answers UNAVAILABLE when they do not in time.
func TestResumeOnLaggingGateway(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	ahead := testkit.StartGateway(t, k, topic, testkit.Options{})
	d := newPausableDialer()
	lagging := testkit.StartGateway(t, k, topic, testkit.Options{
		Store:   store.Config{ClientOpts: []kgo.Opt{kgo.Dialer(d.dial)}, StaleAfter: time.Minute},
		Gateway: gateway.Config{WaitTimeout: 2 * time.Second},
	})
	t.Cleanup(d.unpause) // runs before the gateway's own cleanup
	testkit.Put(t, ahead, "lag/a", "1")
	s := testkit.Subscribe(t, ahead, &confgatev1.SubscribeRequest{Selector: sel("lag/")})
	s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })

	d.pause()
	w := testkit.Put(t, ahead, "lag/a", "2") // the lagging gateway cannot see it
	s.Until(10*time.Second, "the new value", func(s *testkit.Stream) bool { return string(s.View["lag/a"].GetValue()) == "2" })
	c, _ := cursor.Decode(w.Cursor)
	if lagging.Store.Status().Cursor.Covers(c) {
		t.Fatal("the lagging gateway was not behind")
	}

	// Not caught up within the wait bound: UNAVAILABLE, nothing sent.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := lagging.Client.Get(ctx, &confgatev1.GetRequest{Key: "lag/a", MinCursor: w.Cursor}); status.Code(err) != codes.Unavailable {
		t.Fatalf("get with min_cursor on a gateway behind it: %v, want UNAVAILABLE", err)
	}
	st, err := lagging.Client.Subscribe(ctx, &confgatev1.SubscribeRequest{Selector: sel("lag/"), ResumeCursor: s.Cursor})
	if err != nil {
		t.Fatal(err)
	}
	if m, err := st.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("resume on a gateway behind the cursor: %v %v, want UNAVAILABLE and nothing sent", m, err)
	}

	// Caught up while waiting: the resume continues, never older.
	st, err = lagging.Client.Subscribe(ctx, &confgatev1.SubscribeRequest{Selector: sel("lag/"), ResumeCursor: s.Cursor})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(500*time.Millisecond, d.unpause)
	m, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	p := m.GetProgress()
	if p == nil {
		t.Fatalf("first message after a resume with nothing missed: %v, want progress", m)
	}
	pc, _ := cursor.Decode(p.Cursor)
	if !pc.Covers(c) {
		t.Fatalf("resume answered with cursor %v, older than the client's %v", pc.Offsets, c.Offsets)
	}
	testkit.Put(t, ahead, "lag/a", "3")
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if d := m.GetDelta(); d != nil {
			if v := string(d.Changes[0].GetPut().GetValue()); v != "3" {
				t.Fatalf("after resume got %q, want only the newer change", v)
			}
			return
		}
	}
}
