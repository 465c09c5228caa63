package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
)

// Helpers shared by the bootstrap, storm and herd scenarios.

// scenarioMaxRecv is the largest message the scenarios' clients accept, as
// the CLI verbs: gateways keep messages under 4 MiB.
const scenarioMaxRecv = 16 << 20

// newHist returns a microsecond histogram from 1 µs to 10 minutes.
func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(1, int64(10*time.Minute/time.Microsecond), 3)
}

// recordDur records d in microseconds (at least 1).
func recordDur(h *hdrhistogram.Histogram, d time.Duration) {
	us := max(d.Microseconds(), 1)
	if us > h.HighestTrackableValue() {
		us = h.HighestTrackableValue()
	}
	_ = h.RecordValue(us)
}

// ms renders microseconds as milliseconds.
func ms(us int64) float64 { return float64(us) / 1000 }

// durMS renders a duration as milliseconds.
func durMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// dialOpts is how the scenarios dial a gateway: plaintext unless opts set
// other transport credentials (later options win).
func dialOpts(opts []grpc.DialOption) []grpc.DialOption {
	out := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(scenarioMaxRecv)),
	}
	return append(out, opts...)
}

// newConn makes a client for addr without connecting (gRPC connects on the
// first call).
func newConn(addr string, opts []grpc.DialOption) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient("passthrough:///"+addr, dialOpts(opts)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return cc, nil
}

// connectReady makes a client for addr and waits until it is connected.
func connectReady(ctx context.Context, addr string, opts []grpc.DialOption) (*grpc.ClientConn, error) {
	cc, err := newConn(addr, opts)
	if err != nil {
		return nil, err
	}
	cc.Connect()
	for {
		s := cc.GetState()
		if s == connectivity.Ready {
			return cc, nil
		}
		if s == connectivity.Shutdown {
			cc.Close()
			return nil, fmt.Errorf("connect %s: connection shut down", addr)
		}
		if !cc.WaitForStateChange(ctx, s) {
			cc.Close()
			return nil, fmt.Errorf("connect %s: %w (last state %s)", addr, ctx.Err(), s)
		}
	}
}

// closeAll closes conns, many at once.
func closeAll(conns []*grpc.ClientConn) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for _, cc := range conns {
		if cc == nil {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc.Close()
			<-sem
		}()
	}
	wg.Wait()
}

// randomValue returns n pseudo-random bytes (incompressible, like most
// real payloads after the broker's compression).
func randomValue(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := 0; i+8 <= n; i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := n &^ 7; i < n; i++ {
		b[i] = byte(r.Uint32())
	}
	return b
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// sampler reads a server's usage every interval: CPU used since the start
// and the peak RSS.
type sampler struct {
	srv    Server
	start  Usage
	ok     bool
	mu     sync.Mutex
	last   Usage
	peak   int64
	err    error
	cancel context.CancelFunc
	done   chan struct{}
}

// startSampler starts sampling srv every interval; when srv names no way
// to read it, the sampler reports nothing.
func startSampler(ctx context.Context, srv Server, every time.Duration) *sampler {
	s := &sampler{srv: srv, done: make(chan struct{})}
	u, ok, err := srv.Usage(ctx)
	s.ok, s.start, s.last, s.peak, s.err = ok, u, u, u.RSS, err
	ctx, s.cancel = context.WithCancel(ctx)
	if !ok || err != nil {
		close(s.done)
		return s
	}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			s.read(ctx)
		}
	}()
	return s
}

func (s *sampler) read(ctx context.Context) {
	u, _, err := s.srv.Usage(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil && s.err == nil {
			s.err = err
		}
		return
	}
	s.last = u
	s.peak = max(s.peak, u.RSS)
}

// stop takes a last reading and returns the CPU used since the start, the
// peak RSS, and whether the server could be read at all.
func (s *sampler) stop(ctx context.Context) (cpu time.Duration, peak int64, ok bool, err error) {
	s.cancel()
	<-s.done
	if !s.ok {
		return 0, 0, false, nil
	}
	if s.err == nil {
		s.read(ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last.CPU - s.start.CPU, s.peak, true, s.err
}

// counterByLabel reads the counter name from a Prometheus text endpoint,
// summed by the value of label.
func counterByLabel(ctx context.Context, url, name, label string) (map[string]int64, error) {
	fams, err := scrape(ctx, url)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, m := range fams[name].GetMetric() {
		v := metricValue(m)
		for _, lp := range m.GetLabel() {
			if lp.GetName() == label {
				out[lp.GetValue()] += int64(v)
			}
		}
	}
	return out, nil
}
