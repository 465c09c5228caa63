package loadgen

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeTarget is an in-memory pub/sub: Put hands the value to every live
// subscriber whose prefix matches, through an unbounded queue read by one
// goroutine per subscriber, so accounting can be tested exactly.
type fakeTarget struct {
	putDelay time.Duration
	// drop says whether subscriber sub (in subscription order) loses the
	// write of sequence number seq; dup whether it gets it twice.
	drop, dup func(sub, seq int) bool
	// junk is delivered to every subscriber before the first put.
	junk [][]byte

	mu       sync.Mutex
	subs     []*fakeSub
	puts     int
	inFlight int
	maxIn    int
	conns    atomic.Int64 // open
	live     atomic.Int64 // subscriber goroutines running
}

type fakeSub struct {
	idx    int
	prefix string
	mu     sync.Mutex
	queue  [][]byte
	wake   chan struct{}
}

func (f *fakeTarget) Name() string     { return "fake" }
func (f *fakeTarget) Server() Server   { return Server{} }
func (f *fakeTarget) Close() error     { return nil }
func (f *fakeTarget) maxInFlight() int { f.mu.Lock(); defer f.mu.Unlock(); return f.maxIn }

func (f *fakeTarget) Connect(ctx context.Context) (Conn, error) {
	f.conns.Add(1)
	return &fakeConn{f: f}, nil
}

func (f *fakeTarget) Put(ctx context.Context, key string, value []byte) error {
	id, _, _ := DecodePayload(value)
	_, n := splitID(id)
	f.mu.Lock()
	f.puts++
	f.inFlight++
	f.maxIn = max(f.maxIn, f.inFlight)
	subs := append([]*fakeSub(nil), f.subs...)
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.inFlight--
		f.mu.Unlock()
	}()
	for _, s := range subs {
		if !strings.HasPrefix(key, s.prefix) || (f.drop != nil && f.drop(s.idx, n)) {
			continue
		}
		copies := 1
		if f.dup != nil && f.dup(s.idx, n) {
			copies = 2
		}
		for range copies {
			s.push(value)
		}
	}
	if f.putDelay > 0 {
		select {
		case <-time.After(f.putDelay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (s *fakeSub) push(v []byte) {
	s.mu.Lock()
	s.queue = append(s.queue, v)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

type fakeConn struct {
	f      *fakeTarget
	closed atomic.Bool
}

func (c *fakeConn) Subscribe(ctx context.Context, prefix string, deliver func(string, []byte)) error {
	f := c.f
	s := &fakeSub{prefix: prefix, wake: make(chan struct{}, 1)}
	f.mu.Lock()
	s.idx = len(f.subs)
	f.subs = append(f.subs, s)
	f.mu.Unlock()
	for _, j := range f.junk {
		s.push(j)
	}
	f.live.Add(1)
	go func() {
		defer f.live.Add(-1)
		for {
			s.mu.Lock()
			q := s.queue
			s.queue = nil
			s.mu.Unlock()
			for _, v := range q {
				deliver(prefix+"x", v)
			}
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
			}
		}
	}()
	return nil
}

func (c *fakeConn) Close() error {
	if !c.closed.Swap(true) {
		c.f.conns.Add(-1)
	}
	return nil
}

func TestRunFanoutAccounting(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    *fakeTarget
		cfg  FanoutConfig
		// want
		writes, expected, delivered, dups, allHave int64
	}{
		{
			name: "one prefix, all delivered",
			f:    &fakeTarget{},
			cfg:  FanoutConfig{Subscribers: 4, Prefixes: 1, Keys: 3, Rate: 200, Duration: 100 * time.Millisecond},
			// 20 writes × 4 subscribers
			writes: 20, expected: 80, delivered: 80, allHave: 20,
		},
		{
			name: "per-prefix concerned counts",
			f:    &fakeTarget{},
			// prefix 0: subscribers 0, 2, 4; prefix 1: 1, 3. 20 writes,
			// 10 per prefix: 10×3 + 10×2.
			cfg:    FanoutConfig{Subscribers: 5, Conns: 2, Prefixes: 2, Keys: 4, Rate: 200, Duration: 100 * time.Millisecond},
			writes: 20, expected: 50, delivered: 50, allHave: 20,
		},
		{
			name: "more prefixes than subscribers",
			f:    &fakeTarget{},
			// prefixes 0 and 1 watched once each, 2 and 3 by nobody: 10
			// concerned writes, and only those count for all-have.
			cfg:    FanoutConfig{Subscribers: 2, Prefixes: 4, Keys: 8, Rate: 200, Duration: 100 * time.Millisecond},
			writes: 20, expected: 10, delivered: 10, allHave: 10,
		},
		{
			name: "duplicates counted once delivered",
			f:    &fakeTarget{dup: func(sub, n int) bool { return sub == 1 && n%2 == 0 }},
			cfg:  FanoutConfig{Subscribers: 3, Prefixes: 1, Rate: 200, Duration: 100 * time.Millisecond},
			// 10 of the 20 writes twice to subscriber 1
			writes: 20, expected: 60, delivered: 60, dups: 10, allHave: 20,
		},
		{
			name:   "a dropped delivery lowers delivered and all-have",
			f:      &fakeTarget{drop: func(sub, n int) bool { return sub == 2 && (n == 3 || n == 7) }},
			cfg:    FanoutConfig{Subscribers: 3, Prefixes: 1, Rate: 200, Duration: 100 * time.Millisecond, Drain: 200 * time.Millisecond},
			writes: 20, expected: 60, delivered: 58, allHave: 18,
		},
		{
			name: "warmup not counted",
			f:    &fakeTarget{},
			// 10 warmup writes, then 20 measured
			cfg:    FanoutConfig{Subscribers: 2, Prefixes: 1, Rate: 200, Warmup: 50 * time.Millisecond, Duration: 100 * time.Millisecond},
			writes: 20, expected: 40, delivered: 40, allHave: 20,
		},
		{
			name:   "a dropped warmup write changes nothing",
			f:      &fakeTarget{drop: func(sub, n int) bool { return n < 10 }},
			cfg:    FanoutConfig{Subscribers: 2, Prefixes: 1, Rate: 200, Warmup: 50 * time.Millisecond, Duration: 100 * time.Millisecond},
			writes: 20, expected: 40, delivered: 40, allHave: 20,
		},
		{
			name: "foreign and short values ignored",
			f: &fakeTarget{junk: [][]byte{
				nil, []byte("short"),
				NewPayload(64, writeID(0, 3), time.Now()), // run tags are odd
				NewPayload(64, writeID(2, 5), time.Now()),
				NewPayload(16, 0xfffffffffffffffe, time.Now()),
			}},
			cfg:    FanoutConfig{Subscribers: 2, Prefixes: 1, Rate: 200, Duration: 100 * time.Millisecond},
			writes: 20, expected: 40, delivered: 40, allHave: 20,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cfg.Drain == 0 {
				tc.cfg.Drain = 5 * time.Second
			}
			tc.cfg.Size = 100
			tc.cfg.KeyPrefix = "b/"
			r, err := RunFanout(context.Background(), tc.f, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			got := []int64{r.Writes, r.WriteErrors, r.Expected, r.Delivered, r.Duplicates, r.AllHave.TotalCount()}
			want := []int64{tc.writes, 0, tc.expected, tc.delivered, tc.dups, tc.allHave}
			for i, name := range []string{"writes", "write errors", "expected", "delivered", "duplicates", "all-have count"} {
				if got[i] != want[i] {
					t.Errorf("%s = %d, want %d", name, got[i], want[i])
				}
			}
			if n := r.Delivery.TotalCount(); n != r.Delivered {
				t.Errorf("delivery histogram holds %d receipts, delivered %d", n, r.Delivered)
			}
			if n := r.Put.TotalCount(); n != r.Writes {
				t.Errorf("put histogram holds %d, writes %d", n, r.Writes)
			}
			if r.Target != "fake" || r.ServerKnown || r.ServerCPU != 0 {
				t.Errorf("target %q known %v cpu %v", r.Target, r.ServerKnown, r.ServerCPU)
			}
			if n := tc.f.conns.Load(); n != 0 {
				t.Errorf("%d connections left open", n)
			}
			waitZero(t, &tc.f.live)
		})
	}
}

// waitZero waits for the fake's subscriber goroutines to end (RunFanout
// cancels their context before it returns).
func waitZero(t *testing.T, n *atomic.Int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); n.Load() != 0; {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscriber goroutines still running", n.Load())
		}
		time.Sleep(time.Millisecond)
	}
}

// A Put taking 300 ms does not slow the writer down: every scheduled write
// is issued, many at once.
func TestRunFanoutOpenLoop(t *testing.T) {
	f := &fakeTarget{putDelay: 300 * time.Millisecond}
	r, err := RunFanout(context.Background(), f, FanoutConfig{Subscribers: 2, Rate: 50, Duration: time.Second, Drain: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Writes != 50 || r.WriteErrors != 0 || r.Put.TotalCount() != 50 {
		t.Fatalf("writes %d, errors %d, puts recorded %d; want 50, 0, 50", r.Writes, r.WriteErrors, r.Put.TotalCount())
	}
	if r.Put.ValueAtQuantile(50) < 300_000 {
		t.Errorf("put p50 = %d us, want >= 300 ms", r.Put.ValueAtQuantile(50))
	}
	// A closed loop would have one Put at a time; at 50/s with 300 ms
	// each about 15 are in flight.
	if m := f.maxInFlight(); m < 5 {
		t.Errorf("at most %d puts in flight, want several", m)
	}
}

// Writes due while MaxInFlight are in flight are not issued and count as
// errors.
func TestRunFanoutInFlightCap(t *testing.T) {
	f := &fakeTarget{putDelay: time.Hour}
	r, err := RunFanout(context.Background(), f, FanoutConfig{Subscribers: 1, Rate: 100, Duration: 200 * time.Millisecond, Drain: 100 * time.Millisecond, MaxInFlight: 3})
	if err != nil {
		t.Fatal(err)
	}
	// 3 issued and cut at the end of the drain, 17 over the cap: all
	// failed.
	if r.Writes != 20 || r.WriteErrors != 20 || r.Expected != 0 || r.Put.TotalCount() != 0 {
		t.Fatalf("writes %d errors %d expected %d puts %d", r.Writes, r.WriteErrors, r.Expected, r.Put.TotalCount())
	}
	if m := f.maxInFlight(); m != 3 {
		t.Errorf("%d puts in flight at most, want 3", m)
	}
}

func TestRunFanoutCancel(t *testing.T) {
	f := &fakeTarget{putDelay: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	r, err := RunFanout(ctx, f, FanoutConfig{Subscribers: 10, Conns: 3, Rate: 100, Duration: time.Hour, Drain: time.Hour})
	if !errors.Is(err, context.Canceled) || r != nil {
		t.Fatalf("RunFanout = %v, %v; want context.Canceled", r, err)
	}
	if n := f.conns.Load(); n != 0 {
		t.Errorf("%d connections left open", n)
	}
	f.mu.Lock()
	puts := f.puts
	f.mu.Unlock()
	if puts == 0 {
		t.Error("no write was issued before the cancel")
	}
	waitZero(t, &f.live)
}

func TestRunFanoutConfigErrors(t *testing.T) {
	for _, cfg := range []FanoutConfig{
		{Subscribers: 0, Rate: 1, Duration: time.Second},
		{Subscribers: 1, Rate: 0, Duration: time.Second},
		{Subscribers: 1, Rate: 1, Duration: 0},
		{Subscribers: 1, Rate: 1, Duration: time.Second, Drain: -1},
		{Subscribers: 1, Rate: 1e9, Duration: time.Hour},
	} {
		if _, err := RunFanout(context.Background(), &fakeTarget{}, cfg); err == nil {
			t.Errorf("RunFanout(%+v): no error", cfg)
		}
	}
}

// failingConn refuses its third subscriber.
type failingTarget struct{ fakeTarget }

func (f *failingTarget) Connect(ctx context.Context) (Conn, error) {
	c, _ := f.fakeTarget.Connect(ctx)
	return &failingConn{Conn: c}, nil
}

type failingConn struct {
	Conn
	n atomic.Int64
}

func (c *failingConn) Subscribe(ctx context.Context, prefix string, deliver func(string, []byte)) error {
	if c.n.Add(1) == 3 {
		return errors.New("refused")
	}
	return c.Conn.Subscribe(ctx, prefix, deliver)
}

func TestRunFanoutSubscribeError(t *testing.T) {
	f := &failingTarget{}
	_, err := RunFanout(context.Background(), f, FanoutConfig{Subscribers: 10, Conns: 1, Rate: 10, Duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("RunFanout: %v, want the refusal", err)
	}
	if n := f.conns.Load(); n != 0 {
		t.Errorf("%d connections left open", n)
	}
	waitZero(t, &f.live)
}
