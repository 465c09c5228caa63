package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/confgate/confgate/auth"
	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Who may call, and what they may read and write (package auth decides;
// this file enforces):
//   - every RPC but health is authenticated by an interceptor, which puts
//     the principal in the call's context. Health stays open so load
//     balancers can check a gateway without credentials; reflection
//     (the schema) needs a credential like everything else when
//     credentials are configured.
//   - Subscribe and GetSnapshot need the whole selector within the
//     principal's read grants before anything is sent; every message kind
//     (snapshot, delta, coalesced catch-up, resume) is filtered by the
//     selector, so nothing outside the grants can follow. Get needs the key
//     readable, Put and Delete writable.
//   - an open stream is re-checked when the policy changes and ended at its
//     credential's expiry (streamGuard).
//   - every write carries its writer and gateway in reserved record headers
//     a client cannot set, and is logged (component=audit), as is every
//     refused call.
//   - with credentials configured, each principal has its own bounds on
//     open streams and on writes per second (principalLimits).

// Audit headers: every record a gateway writes carries them, in this
// order, after the request's own headers. A request may not give a header
// whose name starts with ReservedHeaderPrefix (in any case): the gateway
// writes these itself, so that they cannot be forged through a gateway.
// (Records written to Kafka directly, not through a gateway, carry what
// their producer wrote: Kafka's ACLs must keep other producers off the
// topic for the headers to be trusted.)
const (
	// WriterHeader names the principal that wrote the record, as
	// "<method>:<name>": "jwt:system:serviceaccount:ci:deployer",
	// "token:ci", "certificate:spiffe://prod/ns/x/sa/y", and "anonymous:"
	// for the anonymous principal.
	WriterHeader = "confgate-writer"
	// GatewayHeader names the gateway that wrote it (Config.Name).
	GatewayHeader = "confgate-gateway"
	// ReservedHeaderPrefix starts every header name reserved for gateways.
	ReservedHeaderPrefix = "confgate-"

	// ReservedHeaders and ReservedHeaderBytes are the room the gateway's
	// own headers take from store.MaxHeaders and store.MaxHeaderBytes: the
	// 2 audit headers and, on conditional, retry-safe and change-set
	// writes, store.SetHeader and store.IfHeader; at most 2 KiB (principal
	// names are at most 1024 bytes, gateway names at most maxNameBytes,
	// request IDs store.MaxRequestIDBytes). The room is fixed, whoever
	// writes, so a request that fits on one gateway fits on all of them.
	ReservedHeaders     = 4
	ReservedHeaderBytes = 2 << 10
	// MaxRequestHeaders and MaxRequestHeaderBytes are what a write request
	// may use: the entry limits less the reserved room, content type
	// included as in the store.
	MaxRequestHeaders     = store.MaxHeaders - ReservedHeaders
	MaxRequestHeaderBytes = store.MaxHeaderBytes - ReservedHeaderBytes
)

// maxNameBytes bounds Config.Name, so the audit headers fit their room.
const maxNameBytes = 256

// The methods as the denied metric and the audit log name them.
const (
	methodSubscribe   = confgatev1.ConfigService_Subscribe_FullMethodName
	methodGetSnapshot = confgatev1.ConfigService_GetSnapshot_FullMethodName
	methodGet         = confgatev1.ConfigService_Get_FullMethodName
	methodPut         = confgatev1.ConfigService_Put_FullMethodName
	methodDelete      = confgatev1.ConfigService_Delete_FullMethodName
	methodApply       = confgatev1.ConfigService_Apply_FullMethodName
	methodDiff        = confgatev1.ConfigService_Diff_FullMethodName
	methodReport      = confgatev1.ConfigService_Report_FullMethodName
	methodGetFleet    = confgatev1.ConfigService_GetFleet_FullMethodName
)

type principalKey struct{}

// principalOf is the caller the auth interceptor found (anonymous when
// none ran, e.g. a gateway used without its ServerOptions).
func principalOf(ctx context.Context) auth.Principal {
	if p, ok := ctx.Value(principalKey{}).(auth.Principal); ok {
		return p
	}
	return auth.Anonymous()
}

// authExempt: health is answered without credentials, for load balancers.
func authExempt(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.Health/")
}

// authenticate finds the caller of method, or refuses the call with the
// authenticator's UNAUTHENTICATED (counted and audited).
func (g *Gateway) authenticate(ctx context.Context, method string) (context.Context, auth.Principal, error) {
	a := g.cfg.Authenticator
	if a == nil || authExempt(method) {
		return context.WithValue(ctx, principalKey{}, auth.Anonymous()), auth.Anonymous(), nil
	}
	p, err := a.Authenticate(ctx)
	if err != nil {
		reason, why := "invalid_credential", err.Error()
		if ae, ok := err.(*auth.AuthError); ok {
			why = ae.Reason
			switch {
			case ae.Reason == "no credential presented":
				reason = "no_credential"
			case strings.Contains(ae.Reason, "expired"):
				reason = "expired"
			}
		}
		g.m.authFailures.WithLabelValues(reason).Inc()
		g.refusals.Info("refused", "method", method, "result", codes.Unauthenticated.String(), "reason", why, "peer", peerAddr(ctx))
		return nil, p, err
	}
	return context.WithValue(ctx, principalKey{}, p), p, nil
}

func peerAddr(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// authUnary authenticates a unary call.
func (g *Gateway) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, _, err := g.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

// authStream authenticates a stream and admits it against its
// principal's stream bound.
func (g *Gateway) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, p, err := g.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	if pl := g.plim; pl != nil && !authExempt(info.FullMethod) {
		if !pl.acquireStream(p.Name) {
			g.m.refused.WithLabelValues("principal_streams").Inc()
			g.refusals.Info("refused", "principal", p.Name, "auth", p.Method, "method", info.FullMethod, "result", codes.ResourceExhausted.String(), "reason", "principal stream limit")
			return status.Errorf(codes.ResourceExhausted,
				"%s has reached its limit of %d open streams on this gateway (--max-streams-per-principal): close streams you no longer need (one Subscribe can select many prefixes), or retry with backoff", p, pl.maxStreams)
		}
		defer pl.releaseStream(p.Name)
	}
	return h(srv, authedStream{ss, ctx})
}

// authedStream carries the principal in its context.
type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s authedStream) Context() context.Context { return s.ctx }

// denied counts and audits a refusal by the policy and returns it.
func (g *Gateway) denied(method string, p auth.Principal, err error, what ...any) error {
	g.m.denied.WithLabelValues(method).Inc()
	args := append([]any{"principal", p.Name, "auth", p.Method, "method", method, "result", codes.PermissionDenied.String()}, what...)
	if de, ok := err.(*auth.DeniedError); ok {
		if de.IsKey {
			args = append(args, "refused_key", de.Prefix)
		} else {
			args = append(args, "refused_prefix", de.Prefix)
		}
	}
	g.refusals.Info("denied", args...)
	return err
}

// authorizeRead checks that the caller may read every key sel selects and
// returns the guard that re-checks it while the stream is open.
func (g *Gateway) authorizeRead(ctx context.Context, method string, sel keyspace.Selector) (*streamGuard, error) {
	gd := &streamGuard{g: g, method: method, p: principalOf(ctx), sel: sel, pol: g.cfg.Policy}
	if gd.pol != nil {
		// The channel before the policy, so a change in between is seen.
		gd.changed = gd.pol.Changed()
		if err := gd.pol.Policy().CanRead(gd.p, sel); err != nil {
			return nil, g.denied(method, gd.p, err, "prefixes", len(sel.Prefixes()))
		}
	}
	if !gd.p.Expiry.IsZero() {
		gd.timer = time.NewTimer(time.Until(gd.p.Expiry))
		gd.expiry = gd.timer.C
	}
	if a := g.cfg.Authenticator; a != nil && gd.p.Method == auth.MethodToken {
		gd.ticker = time.NewTicker(revalidateEvery)
		gd.revalidate = gd.ticker.C
	}
	return gd, nil
}

// revalidateEvery is how often an open stream's static token is checked
// against the tokens file (which is re-read at most once per poll
// interval), so that removing a token from the file ends its streams.
const revalidateEvery = time.Second

// streamGuard ends a stream whose principal may no longer read its
// selector, or whose credential expired. The stream's Send-owning loop
// calls check before every message and waits on changed and expiry when
// idle, so a stream ends with PERMISSION_DENIED at most the policy's poll
// interval (the watcher sees the file change; auth.DefaultPollInterval,
// 1s) plus one message after its grant is removed: the message being sent
// when the change is seen, which was read under the old grant, goes out;
// nothing after it. A credential's expiry (auth.Principal.Expiry: a JWT's
// exp plus leeway) ends it with UNAUTHENTICATED as soon as it passes: the
// client reconnects with a fresh credential and resumes by cursor. A
// stream waiting for the store to become ready sends nothing, and is
// checked at its next message. A static token removed from the tokens
// file ends the stream with UNAUTHENTICATED within about two seconds
// (revalidateEvery, plus the file's poll interval).
type streamGuard struct {
	g      *Gateway
	method string
	p      auth.Principal
	sel    keyspace.Selector
	pol    *auth.PolicyWatcher // nil: no policy, nothing to re-check

	changed <-chan struct{}  // the policy watcher's; nil without one
	expiry  <-chan time.Time // fires at p.Expiry; nil when it has none
	timer   *time.Timer
	// revalidate ticks for a principal of a static token, which ends the
	// stream once revoked; nil for others.
	revalidate <-chan time.Time
	ticker     *time.Ticker
}

func (gd *streamGuard) stop() {
	if gd.timer != nil {
		gd.timer.Stop()
	}
	if gd.ticker != nil {
		gd.ticker.Stop()
	}
}

// revoked runs on each revalidate tick: the stream goes on only while its
// static token is still in the tokens file.
func (gd *streamGuard) revoked() error {
	err := gd.g.cfg.Authenticator.Revalidate(gd.p)
	if err == nil {
		return nil
	}
	g := gd.g
	g.m.authFailures.WithLabelValues("revoked_in_stream").Inc()
	g.refusals.Info("refused", "principal", gd.p.Name, "auth", gd.p.Method, "method", gd.method, "result", codes.Unauthenticated.String(), "reason", "token revoked while the stream was open")
	return err
}

// check is the guard's non-blocking test, before each message.
func (gd *streamGuard) check() error {
	select {
	case <-gd.changed:
		return gd.recheck()
	case <-gd.expiry:
		return gd.expired()
	case <-gd.revalidate:
		return gd.revoked()
	default:
		return nil
	}
}

// recheck runs when the policy changed: the stream goes on only if the
// new policy still lets its principal read its whole selector.
func (gd *streamGuard) recheck() error {
	gd.changed = gd.pol.Changed()
	if err := gd.pol.Policy().CanRead(gd.p, gd.sel); err != nil {
		return gd.g.denied(gd.method, gd.p, err, "prefixes", len(gd.sel.Prefixes()), "when", "the policy changed while the stream was open")
	}
	return nil
}

func (gd *streamGuard) expired() error {
	g := gd.g
	g.m.authFailures.WithLabelValues("expired_in_stream").Inc()
	g.refusals.Info("refused", "principal", gd.p.Name, "auth", gd.p.Method, "method", gd.method, "result", codes.Unauthenticated.String(), "reason", "credential expired while the stream was open")
	return &auth.AuthError{Reason: fmt.Sprintf("the credential of %s expired at %s while the stream was open: reconnect with a fresh one and resume with your cursor",
		gd.p, gd.p.Expiry.UTC().Format(time.RFC3339))}
}

// authorizeWrite admits one write of key by the caller: within its write
// rate, then within its write grants. Refusals are counted and audited.
func (g *Gateway) authorizeWrite(ctx context.Context, method, key string) (auth.Principal, error) {
	return g.authorizeWriteKeys(ctx, method, []string{key})
}

// authorizeWriteKeys is authorizeWrite for the keys of one request (a
// change set takes one write from the principal's rate).
func (g *Gateway) authorizeWriteKeys(ctx context.Context, method string, keys []string) (auth.Principal, error) {
	key := keys[0]
	p := principalOf(ctx)
	if pl := g.plim; pl != nil && !pl.allowWrite(p.Name) {
		g.m.refused.WithLabelValues("principal_writes").Inc()
		g.refusals.Info("refused", "principal", p.Name, "auth", p.Method, "method", method, "key", key, "result", codes.ResourceExhausted.String(), "reason", "principal write rate")
		return p, status.Errorf(codes.ResourceExhausted,
			"%s is writing faster than its limit of %d writes per second on this gateway (burst %d; --max-writes-per-second): slow down and retry with backoff", p, pl.writeRate, 10*pl.writeRate)
	}
	if pol := g.cfg.Policy; pol != nil {
		if err := pol.Policy().CanWrite(p, keys); err != nil {
			return p, g.denied(method, p, err, "key", key, "keys", len(keys))
		}
	}
	return p, nil
}

// checkRequestHeaders refuses reserved header names in w, then applies
// the store's entry rules (CheckWrite, for its precise messages) and the
// entry limits less the room the audit headers take. Counting follows the
// store: the content type is a header, and a content-type header
// repeating it is the same one.
func checkRequestHeaders(w store.Write) error {
	for i, h := range w.Headers {
		if len(h.Key) >= len(ReservedHeaderPrefix) && strings.EqualFold(h.Key[:len(ReservedHeaderPrefix)], ReservedHeaderPrefix) {
			return invalidArg("headers", fmt.Sprintf("header %d is named %s: names starting with %q are reserved for the audit headers gateways write themselves (%s, %s); use another name",
				i, keyspace.Quote(h.Key), ReservedHeaderPrefix, WriterHeader, GatewayHeader))
		}
	}
	if err := store.CheckWrite(w); err != nil {
		var re *store.RuleError
		if !errors.As(err, &re) {
			return invalidArg("key", err.Error())
		}
		if re.Field != "headers" || !errors.Is(re, store.ErrTooLarge) {
			return invalidArg(re.Field, re.Msg)
		}
		// Over the entry's own limits: said below, with the request's.
	}
	n, size := 0, 0
	if w.ContentType != "" {
		n, size = 1, len(store.ContentTypeHeader)+len(w.ContentType)
	}
	for _, h := range w.Headers {
		if h.Key == store.ContentTypeHeader && w.ContentType != "" && string(h.Value) == w.ContentType {
			continue
		}
		n++
		size += len(h.Key) + len(h.Value)
	}
	if n > MaxRequestHeaders {
		return invalidArg("headers", fmt.Sprintf("%d headers, more than the limit %d (an entry holds %d, content type included, less %d reserved for the headers gateways write: %s, %s, %s and %s)",
			n, MaxRequestHeaders, store.MaxHeaders, ReservedHeaders, WriterHeader, GatewayHeader, store.SetHeader, store.IfHeader))
	}
	if size > MaxRequestHeaderBytes {
		return invalidArg("headers", fmt.Sprintf("headers are %d bytes, more than the limit %d (an entry holds %d, content type included, less %d reserved for the audit headers %s and %s)",
			size, MaxRequestHeaderBytes, store.MaxHeaderBytes, ReservedHeaderBytes, WriterHeader, GatewayHeader))
	}
	return nil
}

// auditHeaders are the headers that name p and this gateway.
func (g *Gateway) auditHeaders(p auth.Principal) []store.Header {
	return []store.Header{
		{Key: WriterHeader, Value: []byte(string(p.Method) + ":" + p.Name)},
		{Key: GatewayHeader, Value: []byte(g.cfg.Name)},
	}
}

// principalLimits bounds what each principal may ask of a gateway: open
// streams and writes per second. It is used only when credentials are
// configured; without them everyone is the one anonymous principal, and
// only the gateway-wide bounds apply.
//
// State is kept per principal name while it means something: an entry
// with no open stream and a full write bucket (untouched for
// writeBurst/writeRate, 10 s) is the same as no entry, so it is dropped
// then. Entries are thus bounded by the open streams (MaxStreams) plus
// the principals that wrote in the last 10 s, whatever names callers
// present.
type principalLimits struct {
	maxStreams int
	writeRate  int
	rate       float64 // writeRate
	burst      float64 // ten times it
	now        func() time.Time

	mu      sync.Mutex
	m       map[string]*principalUse // guarded by mu
	sweepAt int                      // len(m) at which idle entries are swept; guarded by mu
}

type principalUse struct {
	streams int
	tokens  float64 // write bucket at last
	last    time.Time
}

const minSweep = 1024

func newPrincipalLimits(c Config) *principalLimits {
	if c.Authenticator == nil || c.Authenticator.Open() {
		return nil
	}
	return &principalLimits{
		maxStreams: c.MaxStreamsPerPrincipal,
		writeRate:  c.MaxWritesPerSecond,
		rate:       float64(c.MaxWritesPerSecond),
		burst:      10 * float64(c.MaxWritesPerSecond),
		now:        time.Now,
		m:          map[string]*principalUse{},
		sweepAt:    minSweep,
	}
}

// use is name's entry, made when missing; mu must be held.
func (pl *principalLimits) use(name string, now time.Time) *principalUse {
	u := pl.m[name]
	if u != nil {
		u.tokens = min(pl.burst, u.tokens+now.Sub(u.last).Seconds()*pl.rate)
		u.last = now
		return u
	}
	if len(pl.m) >= pl.sweepAt {
		pl.sweep(now)
	}
	u = &principalUse{tokens: pl.burst, last: now}
	pl.m[name] = u
	return u
}

// sweep drops idle entries into a new map (a Go map never shrinks), and
// sets the next sweep at twice what is left, so sweeping costs O(1) per
// new entry.
func (pl *principalLimits) sweep(now time.Time) {
	live := make(map[string]*principalUse, len(pl.m)/2)
	for name, u := range pl.m {
		if !pl.idle(u, now) {
			live[name] = u
		}
	}
	pl.m = live
	pl.sweepAt = max(minSweep, 2*len(live))
}

func (pl *principalLimits) idle(u *principalUse, now time.Time) bool {
	return u.streams == 0 && u.tokens+now.Sub(u.last).Seconds()*pl.rate >= pl.burst
}

func (pl *principalLimits) acquireStream(name string) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	u := pl.use(name, pl.now())
	if u.streams >= pl.maxStreams {
		return false
	}
	u.streams++
	return true
}

func (pl *principalLimits) releaseStream(name string) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	now := pl.now()
	u := pl.m[name]
	if u == nil {
		return
	}
	u.streams--
	if pl.idle(u, now) {
		delete(pl.m, name)
	}
}

func (pl *principalLimits) allowWrite(name string) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	u := pl.use(name, pl.now())
	if u.tokens < 1 {
		return false
	}
	u.tokens--
	return true
}

// entries is how many principals have state, for tests.
func (pl *principalLimits) entries() int {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return len(pl.m)
}
