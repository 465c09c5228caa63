package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// Source is what the gateway needs from the store.
type Source interface {
	Ready() bool
	WaitReady(ctx context.Context) error
	Changed() <-chan struct{}
	Status() store.Status
	Snapshot() (*store.Snapshot, error)
	Get(key string) (*store.Entry, cursor.Cursor, bool, error)
	Since(seq uint64, max int) ([]*store.Batch, error)
	ResumeFrom(c cursor.Cursor) (store.Resume, error)
	WaitApplied(ctx context.Context, c cursor.Cursor) error
	CheckInLog(ctx context.Context, c cursor.Cursor) error
	Produce(ctx context.Context, w store.Write) (int32, int64, cursor.Cursor, error)
	Commit(ctx context.Context, c store.Commit) (store.CommitResult, error)
	Diff(prefix string, from, to cursor.Cursor) ([]store.KeyDiff, cursor.Cursor, error)
	SchemaProblems() (values, schemas map[string]string)
	DigestsAt(sel keyspace.Selector, cursors []cursor.Cursor) ([]store.SelectedAt, []bool)
}

var _ Source = (*store.Store)(nil)

// MaxValueBytes is the largest value Put accepts; see store.MaxValueBytes
// for the other limits on an entry.
const MaxValueBytes = store.MaxValueBytes

// serviceName is the name health reports under, besides "".
const serviceName = "confgate.v1.ConfigService"

// Gateway implements confgate.v1.ConfigService.
type Gateway struct {
	confgatev1.UnimplementedConfigServiceServer

	cfg    Config
	src    Source
	log    *slog.Logger
	m      *metrics
	cache  *payloadCache
	groups groups
	health *health.Server

	// buildSlots is the gateway-wide semaphore of snapshot chunk builds
	// (MaxSnapshotBuilds).
	buildSlots chan struct{}

	fleetClients fleetClients
	// selfID is this gateway's own record in the fleet; peers the last
	// judgement of the other gateways (fleet_gateways.go).
	selfID    string
	selfNonce string
	peers     peerStates

	buildMu sync.Mutex
	builds  map[string]*snapBuild
	// builders tracks snapshot chunk builds (each runs on its request's
	// goroutine); Serve waits for them before closing the cache. closing
	// (under buildMu) refuses new builds once Serve is stopping, since a
	// forced grpc Stop does not wait for handlers.
	builders sync.WaitGroup
	closing  bool

	badStrings badStrings       // requests decoded with non-UTF-8 strings
	lim        *limits          // connection and stream limits (limits.go)
	plim       *principalLimits // per-principal limits (auth.go); nil without credentials
	audit      *slog.Logger     // component=audit: writes and refusals
	refusals   *refusalLog      // audit lines of refusals, rate-limited

	status   atomic.Pointer[timedStatus] // see currentStatus
	draining chan struct{}               // closed when shutting down
	disp     dispatcher
	drainOne sync.Once
}

var _ confgatev1.ConfigServiceServer = (*Gateway)(nil)

// New builds a gateway over cfg.Source.
func New(cfg Config) (*Gateway, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	pc, err := newPayloadCache(c.CacheBytes)
	if err != nil {
		return nil, err
	}
	g := &Gateway{
		cfg:        c,
		src:        c.Source,
		log:        c.Logger.With("component", "gateway"),
		audit:      c.Logger.With("component", "audit"),
		refusals:   newRefusalLog(c.Logger.With("component", "audit")),
		m:          newMetrics(c.Registerer),
		cache:      pc,
		groups:     groups{m: map[string]*group{}},
		health:     health.NewServer(),
		builds:     map[string]*snapBuild{},
		buildSlots: make(chan struct{}, c.MaxSnapshotBuilds),
		draining:   make(chan struct{}),
		selfID:     gatewayFleetID(c.Name),
		selfNonce:  fmt.Sprintf("%016x", rand.Uint64()),
	}
	g.lim = newLimits(c, g.m, g.log)
	g.plim = newPrincipalLimits(c)
	if c.Fleet != nil && c.Registerer != nil {
		if err := c.Registerer.Register(fleetCollector{g}); err != nil {
			return nil, fmt.Errorf("gateway: fleet metrics: %w", err)
		}
	}
	g.setHealth(c.Source.Status().Ready)
	return g, nil
}

// timedStatus is the source's status and when it was read.
type timedStatus struct {
	store.Status
	at time.Time
}

// The status in progress messages is shared by every stream rather than
// read per message. It may be statusMaxAge old; one that says not ready,
// stale or lagging only unhealthyMaxAge, so a stream does not report what
// the store said just before it caught up or reached Kafka again.
const (
	statusMaxAge    = 250 * time.Millisecond
	unhealthyMaxAge = 10 * time.Millisecond
)

// currentStatus is the source's status, read again when the shared copy
// is too old.
func (g *Gateway) currentStatus() *timedStatus {
	if st := g.status.Load(); st != nil {
		maxAge := statusMaxAge
		if !st.Ready || st.Stale || st.LagRecords > 0 {
			maxAge = unhealthyMaxAge
		}
		if time.Since(st.at) < maxAge {
			return st
		}
	}
	st := &timedStatus{Status: g.src.Status(), at: time.Now()}
	g.status.Store(st)
	return st
}

// Serve serves gRPC on lis (and the admin HTTP endpoints on admin, when
// not nil) until ctx ends, then drains: health turns NOT_SERVING, new
// connections are refused, clients get GOAWAY and open streams end with
// UNAVAILABLE so they resume elsewhere. It returns after everything
// stopped.
func (g *Gateway) Serve(ctx context.Context, lis net.Listener, admin net.Listener) error {
	srv := grpc.NewServer(g.ServerOptions()...)
	g.Register(srv)
	lis = g.limitListener(lis)

	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errc <- fmt.Errorf("gateway: grpc serve: %w", err)
		}
	}()
	var hs *http.Server
	if admin != nil && g.cfg.AdminTLS && g.cfg.TLS != nil {
		admin = tls.NewListener(admin, g.cfg.TLS)
	}
	if admin != nil {
		hs = &http.Server{Handler: g.AdminHandler(), ReadHeaderTimeout: 5 * time.Second}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := hs.Serve(admin); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("gateway: admin serve: %w", err)
			}
		}()
	}
	rctx, stopRefresh := context.WithCancel(context.Background())
	wg.Add(1)
	go func() {
		defer wg.Done()
		g.refresh(rctx)
	}()
	if g.cfg.Policy != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.cfg.Policy.Run(rctx)
		}()
	}
	if g.cfg.Fleet != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g.watchFleet(rctx)
		}()
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	g.log.Info("shutting down: draining streams")
	// Health first (load balancers stop routing here), then GOAWAY and no
	// new streams (GracefulStop), then the open streams end with
	// UNAVAILABLE so their clients resume on another gateway rather than
	// on a new stream over this connection.
	g.health.Shutdown()
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	g.Drain()
	select {
	case <-done:
	case <-time.After(g.cfg.ShutdownGrace):
		srv.Stop()
		<-done
	}
	stopRefresh()
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = hs.Shutdown(sctx)
		cancel()
	}
	wg.Wait()
	g.buildMu.Lock()
	g.closing = true
	g.buildMu.Unlock()
	g.builders.Wait()
	g.cache.close()
	return err
}

// ServerOptions are the grpc options the gateway needs (the frame codec,
// keepalive); Serve uses them, and so must any server Register is used on.
func (g *Gateway) ServerOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		grpc.ForceServerCodecV2(newFrameCodec(&g.badStrings)),
		// Every connection holds its read buffer for life; subscribers
		// send a request and pings, so a small one is plenty (a large
		// Put is read past the buffer, straight into its frame).
		grpc.ReadBufferSize(g.cfg.ConnReadBufferBytes),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:                  g.cfg.KeepaliveTime,
			Timeout:               g.cfg.KeepaliveTimeout,
			MaxConnectionAge:      g.cfg.MaxConnectionAge,
			MaxConnectionAgeGrace: g.cfg.MaxConnectionAgeGrace,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(g.countUnary, g.authUnary),
		grpc.ChainStreamInterceptor(g.countStream, g.authStream),
	}
	opts = append(opts, g.limitOptions()...)
	if g.cfg.TLS != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(g.cfg.TLS)))
	}
	return opts
}

// Register adds the config service, health and reflection to srv. With
// the ServerOptions' interceptors, health answers without credentials and
// everything else, reflection included, needs them when the Config has an
// Authenticator.
func (g *Gateway) Register(srv *grpc.Server) {
	confgatev1.RegisterConfigServiceServer(srv, g)
	healthpb.RegisterHealthServer(srv, g.health)
	reflection.Register(srv)
}

// Drain makes open streams end with UNAVAILABLE and health report
// NOT_SERVING. Serve calls it on shutdown.
func (g *Gateway) Drain() {
	g.drainOne.Do(func() {
		g.health.Shutdown()
		close(g.draining)
	})
}

func (g *Gateway) refresh(ctx context.Context) {
	t := time.NewTicker(statusMaxAge)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.setHealth(g.currentStatus().Ready)
		g.m.groups.Set(float64(g.groups.len()))
	}
}

func (g *Gateway) setHealth(ready bool) {
	s := healthpb.HealthCheckResponse_NOT_SERVING
	if ready {
		s = healthpb.HealthCheckResponse_SERVING
	}
	g.health.SetServingStatus("", s)
	g.health.SetServingStatus(serviceName, s)
}

// countUnary counts finished calls, answers a request whose strings are
// not UTF-8 with INVALID_ARGUMENT, and keeps a panic in one handler from
// reaching the process.
func (g *Gateway) countUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	start := time.Now()
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, g.recovered(info.FullMethod, p)
		}
		g.m.requests.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
		g.m.duration.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
	}()
	if err := g.badStrings.check(req); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

// countStream is countUnary for streams, which it also admits against the
// per-gateway stream limit.
func (g *Gateway) countStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = g.recovered(info.FullMethod, p)
		}
		g.m.requests.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	}()
	release, err := g.admitStream(info)
	if err != nil {
		return err
	}
	defer release()
	return h(srv, utf8Stream{ss, &g.badStrings})
}

// recovered logs and counts a panic in a handler and turns it into the
// stream's status: that one call fails, the gateway stays up.
func (g *Gateway) recovered(method string, p any) error {
	g.m.panics.WithLabelValues(method).Inc()
	g.log.Error("recovered from a panic in a request handler", "method", method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	return status.Errorf(codes.Internal, "the gateway failed to handle this call (a bug, logged and counted on the gateway): retry, possibly on another gateway")
}

// Errors shared by the handlers.
var (
	errNotReady = status.Error(codes.Unavailable, "gateway is not caught up with the topic yet: retry, or use another gateway")
	errDraining = status.Error(codes.Unavailable, "gateway is shutting down: reconnect with your cursor to another gateway")
)

// invalidArg is INVALID_ARGUMENT naming the request field at fault, in the
// message and as a google.rpc.BadRequest detail, so clients can tell a bad
// cursor (drop it and resubscribe) from a bad selector (give up) without
// parsing text.
func invalidArg(field, msg string) error {
	st := status.New(codes.InvalidArgument, field+": "+msg)
	if d, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: field, Description: msg}}}); err == nil {
		st = d
	}
	return st.Err()
}

func (g *Gateway) parseSelector(sel *confgatev1.Selector) (keyspace.Selector, error) {
	if n := len(sel.GetPrefixes()); n > g.cfg.MaxSelectorPrefixes {
		return keyspace.Selector{}, invalidArg("selector", fmt.Sprintf("has %d prefixes, more than this gateway's limit %d (--max-selector-prefixes): subscribe to a common parent prefix, or split the subscription", n, g.cfg.MaxSelectorPrefixes))
	}
	s, err := keyspace.NewSelector(sel.GetPrefixes())
	if err != nil {
		return keyspace.Selector{}, invalidArg("selector", err.Error())
	}
	return s, nil
}

func parseCursor(field string, b []byte) (cursor.Cursor, error) {
	c, err := cursor.Decode(b)
	if err != nil {
		return cursor.Cursor{}, invalidArg(field, err.Error())
	}
	return c, nil
}

func (g *Gateway) validateKey(key string) error {
	if err := keyspace.ValidateKey(key); err != nil {
		return invalidArg("key", err.Error())
	}
	if len(key) > g.cfg.MaxKeyBytes {
		return invalidArg("key", fmt.Sprintf("is %d bytes, longer than this gateway's limit %d (--max-key-bytes)", len(key), g.cfg.MaxKeyBytes))
	}
	return nil
}

// waitApplied waits, bounded, for this gateway to reach c.
func (g *Gateway) waitApplied(ctx context.Context, field string, c cursor.Cursor) error {
	wctx, cancel := context.WithTimeout(ctx, g.cfg.WaitTimeout)
	defer cancel()
	err := g.src.WaitApplied(wctx, c)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrTopicChanged):
		return status.Errorf(codes.FailedPrecondition, "%s belongs to another incarnation of the topic (deleted and recreated): read without it", field)
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	case errors.Is(err, store.ErrNotReady):
		return errNotReady
	}
	// Not reached in time: lagging, or waiting for what will never come.
	// The check gets a bound of its own: one request to Kafka.
	cctx, cancel := context.WithTimeout(ctx, max(g.cfg.WaitTimeout, 2*time.Second))
	defer cancel()
	if cerr := g.src.CheckInLog(cctx, c); errors.Is(cerr, store.ErrBeyondLog) {
		return beyondLogError{status.New(codes.FailedPrecondition, fmt.Sprintf(
			"%s is past the end of the topic's log (%v): the log was truncated after it was read, or it was not made by a gateway; read without it", field, cerr))}
	}
	return status.Errorf(codes.Unavailable, "gateway has not applied %s within %s: retry, or use another gateway", field, g.cfg.WaitTimeout)
}

// beyondLogError answers a cursor past the end of the topic's log, a
// position no gateway will reach: FAILED_PRECONDITION, so that clients
// stop waiting for it; Subscribe answers it with a reset instead.
type beyondLogError struct{ st *status.Status }

func (e beyondLogError) Error() string              { return e.st.Err().Error() }
func (e beyondLogError) GRPCStatus() *status.Status { return e.st }

// Get returns one entry.
func (g *Gateway) Get(ctx context.Context, req *confgatev1.GetRequest) (*confgatev1.GetResponse, error) {
	if err := g.validateKey(req.GetKey()); err != nil {
		return nil, err
	}
	// Before the lookup: a refused key's existence is not revealed.
	if pol := g.cfg.Policy; pol != nil {
		p := principalOf(ctx)
		if err := pol.Policy().CanReadKey(p, req.GetKey()); err != nil {
			return nil, g.denied(methodGet, p, err, "key", req.GetKey())
		}
	}
	if len(req.GetMinCursor()) > 0 {
		c, err := parseCursor("min_cursor", req.GetMinCursor())
		if err != nil {
			return nil, err
		}
		if err := g.waitApplied(ctx, "min_cursor", c); err != nil {
			return nil, err
		}
	}
	e, at, ok, err := g.src.Get(req.GetKey())
	if err != nil {
		return nil, errNotReady
	}
	if !ok {
		return nil, status.Errorf(codes.NotFound, "key %q not found", req.GetKey())
	}
	return &confgatev1.GetResponse{Entry: protoEntry(e), Cursor: at.Encode()}, nil
}

// Put writes an entry.
func (g *Gateway) Put(ctx context.Context, req *confgatev1.PutRequest) (*confgatev1.PutResponse, error) {
	if err := g.validateKey(req.GetKey()); err != nil {
		return nil, err
	}
	if n := len(req.GetValue()); n > g.cfg.MaxValueBytes {
		return nil, invalidArg("value", fmt.Sprintf("is %d bytes, more than the limit %d: keep config entries small", n, g.cfg.MaxValueBytes))
	}
	if n := len(req.GetContentType()); n > store.MaxContentTypeBytes {
		return nil, invalidArg("content_type", fmt.Sprintf("is %d bytes, longer than the limit %d", n, store.MaxContentTypeBytes))
	}
	w := store.Write{Key: req.GetKey(), Value: req.GetValue(), ContentType: req.GetContentType()}
	for _, h := range req.GetHeaders() {
		w.Headers = append(w.Headers, store.Header{Key: h.GetKey(), Value: h.GetValue()})
	}
	if err := checkRequestHeaders(w); err != nil {
		return nil, err
	}
	if req.GetPrecondition() != nil || req.GetRequestId() != "" {
		res, err := g.commit(ctx, methodPut, []opIn{{w: w, cond: req.GetPrecondition()}}, req.GetRequestId(), req.GetWaitApplied(), false)
		if err != nil {
			return nil, err
		}
		return &confgatev1.PutResponse{Version: res.GetVersions()[0], Cursor: res.GetCursor(), Duplicate: res.GetDuplicate()}, nil
	}
	v, c, err := g.write(ctx, methodPut, w, req.GetWaitApplied())
	if err != nil {
		return nil, err
	}
	return &confgatev1.PutResponse{Version: v, Cursor: c}, nil
}

// Delete writes a tombstone.
func (g *Gateway) Delete(ctx context.Context, req *confgatev1.DeleteRequest) (*confgatev1.DeleteResponse, error) {
	if err := g.validateKey(req.GetKey()); err != nil {
		return nil, err
	}
	if req.GetPrecondition() != nil || req.GetRequestId() != "" {
		res, err := g.commit(ctx, methodDelete, []opIn{{w: store.Write{Key: req.GetKey(), Delete: true}, cond: req.GetPrecondition()}}, req.GetRequestId(), req.GetWaitApplied(), false)
		if err != nil {
			return nil, err
		}
		return &confgatev1.DeleteResponse{Version: res.GetVersions()[0], Cursor: res.GetCursor(), Duplicate: res.GetDuplicate()}, nil
	}
	v, c, err := g.write(ctx, methodDelete, store.Write{Key: req.GetKey(), Delete: true}, req.GetWaitApplied())
	if err != nil {
		return nil, err
	}
	return &confgatev1.DeleteResponse{Version: v, Cursor: c}, nil
}

// write admits w (the writer's rate and grants), stamps it with the
// audit headers and writes it; every outcome past admission is audited.
func (g *Gateway) write(ctx context.Context, method string, w store.Write, wait bool) (*confgatev1.Version, []byte, error) {
	pr, err := g.authorizeWrite(ctx, method, w.Key)
	if err != nil {
		return nil, nil, err
	}
	// The answer carries a cursor of this gateway's state; until it has
	// caught up that cursor would mean nothing.
	if !g.src.Ready() {
		return nil, nil, errNotReady
	}
	w.Headers = append(w.Headers, g.auditHeaders(pr)...)
	p, off, c, err := g.src.Produce(ctx, w)
	if err != nil {
		err = commitStatus(ctx, err)
		g.audit.Info("write", "principal", pr.Name, "auth", pr.Method, "method", method, "key", w.Key, "result", status.Code(err).String())
		return nil, nil, err
	}
	g.audit.Info("write", "principal", pr.Name, "auth", pr.Method, "method", method, "key", w.Key, "result", codes.OK.String(), "partition", p, "offset", off)
	if wait {
		if err := g.waitApplied(ctx, "the write", c); err != nil {
			st := status.Convert(err)
			return nil, nil, status.Errorf(st.Code(), "written at partition %d offset %d (cursor %s), but: %s", p, off, c.String(), st.Message())
		}
	}
	return &confgatev1.Version{Partition: p, Offset: off}, c.Encode(), nil
}

func produceStatus(ctx context.Context, err error) error {
	switch {
	case ctx.Err() != nil:
		return status.FromContextError(ctx.Err()).Err()
	case errors.Is(err, store.ErrUnreachable):
		return status.Errorf(codes.Unavailable, "write not acknowledged, Kafka is unreachable: %v", err)
	case errors.As(err, new(*store.RuleError)):
		// The entry rules, shared with what the store skips on read.
		var re *store.RuleError
		errors.As(err, &re)
		return invalidArg(re.Field, re.Msg)
	case errors.Is(err, store.ErrTooLargeForTopic):
		return status.Errorf(codes.InvalidArgument, "Kafka rejected the record as too large for the topic: its max.message.bytes is below this record's size; confgate accepts entries up to %d bytes of value, which need max.message.bytes of at least %d (Kafka's default): %v", store.MaxValueBytes, store.ProducerBatchBytes, err)
	case errors.Is(err, store.ErrWriteDenied):
		return status.Errorf(codes.PermissionDenied, "Kafka refused the write: %v", err)
	case errors.Is(err, store.ErrWriteRejected):
		return status.Errorf(codes.Internal, "Kafka rejected the write: %v", err)
	default:
		return status.Errorf(codes.Unavailable, "write not acknowledged: %v", err)
	}
}

func protoEntry(e *store.Entry) *confgatev1.Entry {
	pe := &confgatev1.Entry{
		Key:         e.Key,
		Value:       e.Value,
		Version:     &confgatev1.Version{Partition: e.Partition, Offset: e.Offset},
		ContentType: e.ContentType,
	}
	for _, h := range e.Headers {
		pe.Headers = append(pe.Headers, &confgatev1.Header{Key: h.Key, Value: h.Value})
	}
	return pe
}
