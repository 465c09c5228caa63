package gateway

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// What grpc-go (v1.85) does by itself against abusive connections, and so
// what is not rebuilt here:
//   - MaxConcurrentStreams is advertised in SETTINGS and streams past it are
//     refused (RST_STREAM REFUSED_STREAM) by the transport;
//   - since the HTTP/2 rapid-reset fix (grpc-go #6703), a connection with
//     MaxConcurrentStreams handlers still running is not read any further
//     until one returns, and the reader also stops while too many RST_STREAM
//     and other response frames are queued for it.
// What it does not do is end such a connection: a client that opens and
// cancels streams in a loop gets each one handled (a goroutine, the
// interceptors, the handler's start) forever. limits closes it.
//
// The gateway-wide stream bound, the connection bound and the accept
// back-off are also ours.

// healthWatch streams may use a small reserve above MaxStreams, so that a
// load balancer's health checks keep working on a full gateway (a health
// check refused there would make it look dead, and an orchestrator might
// restart it, cutting every open stream). Every other stream counts
// against MaxStreams: grpc reflection, and health Watch streams too, so an
// abuser cannot open unbounded streams of a kind the limit ignores.
const healthWatch = "/grpc.health.v1.Health/Watch"

// limits is a gateway's state for its stream, connection and reset bounds.
type limits struct {
	m   *metrics
	log *slog.Logger

	maxStreams    int64 // MaxStreams
	healthReserve int64 // extra room for health Watch streams
	streams       atomic.Int64

	resetRate  float64 // MaxResetsPerSecond
	resetBurst float64 // ten times it

	cfgConns int // MaxConnections as configured (0: derive)

	mu    sync.Mutex
	conns map[string]*limitConn // open connections by connKey; guarded by mu
	open  int                   // len(conns) plus any not yet keyed; guarded by mu

	// known holds methods that reached a handler (a stats.Begin event): an
	// RPC to one of them always ends with a stats.End, which tells whether
	// the client cancelled it. The set is bounded by the registered methods.
	known sync.Map // string -> struct{}
}

// limits is the gateway's connection and stream limits, made in New.
func (g *Gateway) limits() *limits { return g.lim }

func newLimits(cfg Config, m *metrics, log *slog.Logger) *limits {
	return &limits{
		m:             m,
		log:           log,
		maxStreams:    int64(cfg.MaxStreams),
		healthReserve: max(16, int64(cfg.MaxStreams)/100),
		resetRate:     float64(cfg.MaxResetsPerSecond),
		resetBurst:    10 * float64(cfg.MaxResetsPerSecond),
		cfgConns:      cfg.MaxConnections,
		conns:         map[string]*limitConn{},
	}
}

// limitOptions are the grpc options that bound what one connection may
// ask of the gateway: its concurrent streams, and (through a stats
// handler that sees every RPC end) how fast it may cancel them.
func (g *Gateway) limitOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxConcurrentStreams(g.cfg.MaxStreamsPerConn),
		grpc.StatsHandler(resetWatch{g.limits()}),
	}
}

// admitStream admits one more stream or refuses it with RESOURCE_EXHAUSTED;
// release must be called when the stream ends. Open streams are never
// touched.
func (g *Gateway) admitStream(info *grpc.StreamServerInfo) (release func(), err error) {
	l := g.limits()
	limit := l.maxStreams
	if info.FullMethod == healthWatch {
		limit += l.healthReserve
	}
	if l.streams.Add(1) > limit {
		l.streams.Add(-1)
		g.m.refused.WithLabelValues("streams").Inc()
		return nil, status.Errorf(codes.ResourceExhausted,
			"this gateway has reached its limit of %d open streams (--max-streams): retry with backoff, preferably on another gateway; operators can raise --max-streams or add gateways", l.maxStreams)
	}
	var once sync.Once
	return func() { once.Do(func() { l.streams.Add(-1) }) }, nil
}

// limitListener bounds open connections on lis: past the bound it accepts
// and at once closes new ones (the accept loop never stalls, so the kernel
// backlog does not fill up with connections nobody answers), and it backs
// off on accept errors such as EMFILE instead of spinning.
func (g *Gateway) limitListener(lis net.Listener) net.Listener {
	l := g.limits()
	n, soft := l.cfgConns, uint64(0)
	if n <= 0 {
		soft = fdLimit()
		n = connsForFDs(soft)
	}
	switch {
	case l.cfgConns > 0:
		g.log.Info("connection limit", "max_connections", n, "from", "--max-connections")
	case n > 0:
		g.log.Info("connection limit derived from the file descriptor limit, less headroom for Kafka, the admin listener and files",
			"max_connections", n, "nofile_soft_limit", soft)
	default:
		g.log.Info("no connection limit: the file descriptor limit is unknown on this platform; set --max-connections")
	}
	return &limitListener{Listener: lis, l: l, max: n, closed: make(chan struct{})}
}

// connsForFDs is the connection bound a soft file descriptor limit leaves
// room for: a tenth of it, at least 64, stays for everything else (Kafka
// connections, the admin listener and its clients, files, the fd briefly
// used to refuse a connection). 0 when the limit is unknown.
func connsForFDs(soft uint64) int {
	if soft == 0 {
		return 0
	}
	s := int(min(soft, math.MaxInt32))
	n := s - max(64, s/10)
	return max(n, s/2, 1)
}

type limitListener struct {
	net.Listener
	l   *limits
	max int // 0: unbounded

	closeOnce sync.Once
	closed    chan struct{}
}

// Accept returns the next connection within the bound. Errors other than
// temporary ones (the listener closed) end it.
func (ll *limitListener) Accept() (net.Conn, error) {
	var delay time.Duration
	failures := 0
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if !errors.As(err, &te) || !te.Temporary() {
				return nil, err
			}
			// Out of file descriptors (EMFILE, ENFILE) or a connection
			// aborted before it was accepted: back off the way net/http
			// and grpc do, 5ms doubling to 1s.
			failures++
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			if failures == 1 || delay == time.Second && failures%60 == 0 {
				ll.l.log.Warn("accepting gRPC connections failed; backing off (out of file descriptors? see --max-connections)",
					"err", err, "failures", failures, "retry_in", delay)
			}
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ll.closed:
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		if failures > 0 {
			ll.l.log.Info("accepting gRPC connections again", "failures", failures)
			failures, delay = 0, 0
		}
		if lc := ll.l.admit(c, ll.max); lc != nil {
			return lc, nil
		}
		ll.l.m.refused.WithLabelValues("connections").Inc()
		_ = c.Close()
	}
}

func (ll *limitListener) Close() error {
	ll.closeOnce.Do(func() { close(ll.closed) })
	return ll.Listener.Close()
}

func connKey(local, remote net.Addr) string {
	if local == nil || remote == nil {
		return ""
	}
	return local.String() + " " + remote.String()
}

// admit tracks c when fewer than max connections are open (max 0: no
// bound), or returns nil.
func (l *limits) admit(c net.Conn, max int) *limitConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if max > 0 && l.open >= max {
		return nil
	}
	lc := &limitConn{Conn: c, l: l, key: connKey(c.LocalAddr(), c.RemoteAddr()), tokens: l.resetBurst, last: time.Now()}
	l.open++
	if lc.key != "" {
		l.conns[lc.key] = lc
	}
	l.m.connections.Inc()
	return lc
}

func (l *limits) forget(lc *limitConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.conns[lc.key] == lc {
		delete(l.conns, lc.key)
	}
	l.m.connections.Dec()
}

func (l *limits) lookup(local, remote net.Addr) *limitConn {
	k := connKey(local, remote)
	if k == "" {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.conns[k]
}

// limitConn is an accepted gRPC connection: counted while open, and
// closed when its client cancels streams too fast.
type limitConn struct {
	net.Conn
	l   *limits
	key string

	closeOnce sync.Once
	closed    atomic.Bool // set before the socket closes
	cut       atomic.Bool // closed for resets (counted once)

	mu     sync.Mutex
	tokens float64 // reset token bucket; guarded by mu
	last   time.Time
}

func (c *limitConn) Close() error {
	// The flag goes first: grpc closes the socket before it cancels the
	// connection's streams, so their ends are not taken for resets.
	c.closed.Store(true)
	err := c.Conn.Close()
	c.closeOnce.Do(func() { c.l.forget(c) })
	return err
}

// reset records one stream the client ended before the gateway did, and
// closes the connection once they come faster than the bucket allows.
func (c *limitConn) reset() {
	if c.closed.Load() {
		return
	}
	c.mu.Lock()
	now := time.Now()
	c.tokens = min(c.l.resetBurst, c.tokens+now.Sub(c.last).Seconds()*c.l.resetRate)
	c.last = now
	ok := c.tokens >= 1
	if ok {
		c.tokens--
	}
	c.mu.Unlock()
	if ok || !c.cut.CompareAndSwap(false, true) {
		return
	}
	c.l.m.refused.WithLabelValues("resets").Inc()
	c.l.log.Warn("closed a connection that cancelled streams faster than --max-resets-per-second (an HTTP/2 rapid-reset flood, or a client bug)",
		"remote", c.RemoteAddr().String(), "max_resets_per_second", c.l.resetRate, "burst", c.l.resetBurst)
	_ = c.Close()
}

// refund gives back a token taken for what turned out not to be a reset.
func (c *limitConn) refund() {
	c.mu.Lock()
	c.tokens = min(c.l.resetBurst, c.tokens+1)
	c.mu.Unlock()
}

// resetWatch is a grpc stats handler that finds streams the client reset:
// grpc-go has no RST_STREAM hook, but a stream the server finished gets a
// stats.OutTrailer, and one the client reset (or whose connection died)
// ends without one, since the transport drops the status of a stream that
// is already closed.
type resetWatch struct{ l *limits }

var _ stats.Handler = resetWatch{}

type (
	connKeyCtx struct{}
	rpcKeyCtx  struct{}
)

// rpcEnd follows one RPC to its end.
type rpcEnd struct {
	conn    *limitConn
	method  string
	begun   atomic.Bool // a handler was reached: a stats.End will come
	trailer atomic.Bool // the server sent the status
	state   atomic.Int32
}

// rpcEnd.state
const (
	undecided   = iota
	resetAtEnd  // counted at stats.End
	resetEarly  // counted when the stream's context ended
	resetRefund // counted early, then found to be no reset
)

func (w resetWatch) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	if c := w.l.lookup(info.LocalAddr, info.RemoteAddr); c != nil {
		return context.WithValue(ctx, connKeyCtx{}, c)
	}
	return ctx
}

func (resetWatch) HandleConn(context.Context, stats.ConnStats) {}

func (w resetWatch) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	c, _ := ctx.Value(connKeyCtx{}).(*limitConn)
	if c == nil {
		return ctx
	}
	r := &rpcEnd{conn: c, method: info.FullMethodName}
	if _, ok := w.l.known.Load(info.FullMethodName); !ok {
		// An unknown method gets no stats.End; watch the stream's
		// context instead, so resets cannot hide behind a bogus name.
		context.AfterFunc(ctx, r.ended)
	}
	return context.WithValue(ctx, rpcKeyCtx{}, r)
}

func (w resetWatch) HandleRPC(ctx context.Context, s stats.RPCStats) {
	r, _ := ctx.Value(rpcKeyCtx{}).(*rpcEnd)
	if r == nil {
		return
	}
	switch s.(type) {
	case *stats.Begin:
		r.begun.Store(true)
		if _, ok := w.l.known.Load(r.method); !ok {
			w.l.known.Store(r.method, struct{}{})
		}
	case *stats.OutTrailer:
		r.trailer.Store(true)
		if r.state.CompareAndSwap(resetEarly, resetRefund) {
			r.conn.refund()
		}
	case *stats.End:
		if !r.trailer.Load() && r.state.CompareAndSwap(undecided, resetAtEnd) {
			r.conn.reset()
		}
	}
}

// ended runs when the stream's context ends, for RPCs that may never get a
// stats.End. When no handler was reached and no status sent, the client
// reset the stream; if the status turns out to have been on its way (the
// transport ends the context just before it reports the trailer), the
// token is refunded.
func (r *rpcEnd) ended() {
	if r.begun.Load() || r.trailer.Load() {
		return
	}
	if r.state.CompareAndSwap(undecided, resetEarly) {
		r.conn.reset()
	}
}
