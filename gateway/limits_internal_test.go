package gateway

import (
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestConnsForFDs(t *testing.T) {
	for _, tc := range []struct {
		soft uint64
		want int
	}{
		{0, 0},                                 // unknown: no bound
		{1, 1},                                 // never 0 (which would mean unbounded)
		{100, 50},                              // headroom 64 would leave 36: keep half
		{500, 436},                             // headroom 64
		{1024, 922},                            // headroom a tenth (102)
		{20000, 18000},                         // headroom a tenth
		{1 << 20, 943719},                      // headroom a tenth
		{^uint64(0), 1<<31 - 1 - (1<<31-1)/10}, // RLIM_INFINITY
	} {
		if got := connsForFDs(tc.soft); got != tc.want {
			t.Errorf("connsForFDs(%d) = %d, want %d", tc.soft, got, tc.want)
		}
	}
}

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if c := d.GetCounter(); c != nil {
		return c.GetValue()
	}
	return d.GetGauge().GetValue()
}

func testLimits(cfg Config) *limits {
	return newLimits(cfg, newMetrics(prometheus.NewRegistry()), slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// fakeListener returns errs in turn, then conns, then blocks until closed.
type fakeListener struct {
	mu      sync.Mutex
	errs    []error
	conns   []net.Conn
	accepts int
	closed  chan struct{}
}

func (f *fakeListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	f.accepts++
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		f.mu.Unlock()
		return nil, err
	}
	if len(f.conns) > 0 {
		c := f.conns[0]
		f.conns = f.conns[1:]
		f.mu.Unlock()
		return c, nil
	}
	f.mu.Unlock()
	<-f.closed
	return nil, net.ErrClosed
}
func (f *fakeListener) Close() error   { close(f.closed); return nil }
func (f *fakeListener) Addr() net.Addr { return &net.TCPAddr{} }

func pipeConn(t *testing.T) (server, client net.Conn) {
	s, c := net.Pipe()
	t.Cleanup(func() { s.Close(); c.Close() })
	return s, c
}

// Accept errors such as EMFILE are retried after a back-off and never
// reach grpc; connections past the bound are closed and counted; a closed
// listener ends Accept even while it backs off.
func TestLimitListenerAccept(t *testing.T) {
	for _, tc := range []struct {
		name      string
		errs      []error
		conns     int
		max       int
		wantConns int // returned by Accept
	}{
		{"EMFILE then a connection", []error{syscall.EMFILE, syscall.EMFILE, syscall.ENFILE}, 1, 0, 1},
		{"EMFILE as net.Listener returns it", []error{&net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}}, 1, 0, 1},
		{"past the bound", nil, 4, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := testLimits(Config{MaxResetsPerSecond: 1})
			fl := &fakeListener{errs: tc.errs, closed: make(chan struct{})}
			var clients []net.Conn
			for range tc.conns {
				s, c := pipeConn(t)
				fl.conns = append(fl.conns, s)
				clients = append(clients, c)
			}
			ll := &limitListener{Listener: fl, l: l, max: tc.max, closed: make(chan struct{})}
			var got []net.Conn
			for range tc.wantConns {
				c, err := ll.Accept()
				if err != nil {
					t.Fatalf("Accept: %v", err)
				}
				got = append(got, c)
			}
			done := make(chan error, 1)
			go func() { _, err := ll.Accept(); done <- err }()
			if tc.conns > tc.wantConns {
				// The refused ones were closed: their clients read EOF.
				for _, c := range clients[tc.wantConns:] {
					if _, err := c.Read(make([]byte, 1)); err != io.EOF {
						t.Fatalf("refused connection: read %v, want EOF", err)
					}
				}
			}
			ll.Close()
			if err := <-done; err != net.ErrClosed {
				t.Fatalf("Accept after Close: %v", err)
			}
			if want := len(tc.errs) + tc.conns + 1; fl.accepts != want {
				t.Fatalf("%d accepts, want %d: one per error, connection and the final one", fl.accepts, want)
			}
			if n := value(l.m.refused.WithLabelValues("connections")); n != float64(tc.conns-tc.wantConns) {
				t.Fatalf("refused{connections} = %v", n)
			}
			if n := value(l.m.connections); n != float64(tc.wantConns) {
				t.Fatalf("connections gauge = %v, want %d", n, tc.wantConns)
			}
			for _, c := range got {
				c.Close()
				c.Close() // twice: counted once
			}
			if n := value(l.m.connections); n != 0 {
				t.Fatalf("connections gauge = %v after closing all, want 0", n)
			}
		})
	}
}

// Accept backing off on EMFILE returns at once when the listener closes.
func TestLimitListenerCloseDuringBackoff(t *testing.T) {
	l := testLimits(Config{MaxResetsPerSecond: 1})
	errs := make([]error, 1000)
	for i := range errs {
		errs[i] = syscall.EMFILE
	}
	fl := &fakeListener{errs: errs, closed: make(chan struct{})}
	ll := &limitListener{Listener: fl, l: l, closed: make(chan struct{})}
	done := make(chan error, 1)
	go func() { _, err := ll.Accept(); done <- err }()
	ll.Close()
	if err := <-done; err != net.ErrClosed {
		t.Fatalf("Accept: %v", err)
	}
}

// The reset bucket allows its burst, then closes the connection once and
// counts it once; resets after the close, and on a connection closed for
// other reasons, are ignored.
func TestResetBucket(t *testing.T) {
	for _, tc := range []struct {
		name       string
		closeFirst bool
		resets     int
		wantCut    bool
	}{
		{"within the burst", false, 10, false},
		{"past the burst", false, 11, true},
		{"far past the burst", false, 100, true},
		{"connection already closed", true, 100, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := testLimits(Config{MaxResetsPerSecond: 1}) // burst 10
			l.resetRate = 1e-9                             // no refill while the test runs
			s, c := pipeConn(t)
			lc := l.admit(s, 0)
			if tc.closeFirst {
				lc.Close()
			}
			for range tc.resets {
				lc.reset()
			}
			if got := lc.cut.Load(); got != tc.wantCut {
				t.Fatalf("cut = %v, want %v", got, tc.wantCut)
			}
			want := 0.0
			if tc.wantCut {
				want = 1
				if _, err := c.Read(make([]byte, 1)); err != io.EOF {
					t.Fatalf("client read %v, want EOF", err)
				}
			}
			if n := value(l.m.refused.WithLabelValues("resets")); n != want {
				t.Fatalf("refused{resets} = %v, want %v", n, want)
			}
		})
	}
}
