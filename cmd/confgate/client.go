package main

import (
	"context"
	"errors"
	"fmt"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// maxRecvMsgSize is the largest message the verbs accept. Gateways keep
// messages under 4 MiB; the margin covers a single oversized entry.
const maxRecvMsgSize = 16 << 20

// connectBudget bounds connecting to one address when others are left to
// try, so a black-holed first address does not eat the whole --timeout.
const connectBudget = 3 * time.Second

// addrList splits --addr.
func (g *globals) addrList() ([]string, error) {
	var out []string
	for a := range strings.SplitSeq(g.addr, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, &usageError{errors.New("--addr is empty: give a gateway address such as " + defaultAddr)}
	}
	return out, nil
}

// dialRecorder keeps the last dial error of a connection, so a failure to
// connect can say why.
type dialRecorder struct {
	mu  sync.Mutex
	err error
}

func (d *dialRecorder) dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		d.mu.Lock()
		d.err = err
		d.mu.Unlock()
	}
	return c, err
}

func (d *dialRecorder) last() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// connectError: addr could not be connected to.
type connectError struct {
	addr string
	err  error
}

func (e *connectError) Error() string { return fmt.Sprintf("%s: %v", e.addr, e.err) }
func (e *connectError) Unwrap() error { return e.err }

// unreachableError: no address could be connected to.
type unreachableError struct{ errs []*connectError }

func (e *unreachableError) Error() string {
	addrs := make([]string, len(e.errs))
	refused := true
	var other *connectError
	for i, ce := range e.errs {
		addrs[i] = ce.addr
		if !errors.Is(ce.err, syscall.ECONNREFUSED) {
			refused = false
			if other == nil {
				other = ce
			}
		}
	}
	where := strings.Join(addrs, ", ")
	if refused {
		return fmt.Sprintf("no gateway reachable at %s (is `confgate dev` running?)", where)
	}
	return fmt.Sprintf("no gateway reachable at %s: %v", where, other)
}

// connect opens a connection to addr and waits until it is up, or fails.
// perRPC, when not nil, is sent on every call (the bearer token).
func connect(ctx context.Context, addr string, creds credentials.TransportCredentials, perRPC credentials.PerRPCCredentials) (*grpc.ClientConn, error) {
	rec := &dialRecorder{}
	// passthrough: the dialer gets addr as written and resolves it itself,
	// so a DNS failure is recorded like any other dial error.
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithContextDialer(rec.dial),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecvMsgSize)),
	}
	if perRPC != nil {
		opts = append(opts, grpc.WithPerRPCCredentials(perRPC))
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, opts...)
	if err != nil {
		return nil, &connectError{addr, err}
	}
	cc.Connect()
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return cc, nil
		case connectivity.TransientFailure, connectivity.Shutdown:
			err := rec.last()
			if err == nil {
				err = setupError(ctx, cc)
			}
			cc.Close()
			return nil, &connectError{addr, err}
		}
		if !cc.WaitForStateChange(ctx, s) {
			cc.Close()
			err := rec.last()
			if err == nil {
				err = fmt.Errorf("no connection within the time allowed: %w", ctx.Err())
			}
			return nil, &connectError{addr, err}
		}
	}
}

// setupError says why a connection that was dialed could not be set up
// (a TLS handshake, most often). gRPC keeps that reason for the calls made
// while the connection is failing, so one call fetches it.
func setupError(ctx context.Context, cc *grpc.ClientConn) error {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	detail := "no reason given"
	if _, err := healthpb.NewHealthClient(cc).Check(cctx, &healthpb.HealthCheckRequest{}); err != nil {
		detail = status.Convert(err).Message()
	}
	return fmt.Errorf("no gRPC connection could be set up (%s); is it a confgate gateway? check --tls and --tls-ca, and --tls-cert if it requires client certificates", detail)
}

// connectAny connects to the first reachable address of addrs, starting at
// start, and returns the connection and the index of its address.
func connectAny(ctx context.Context, addrs []string, start int, creds credentials.TransportCredentials, perRPC credentials.PerRPCCredentials) (*grpc.ClientConn, int, error) {
	var errs []*connectError
	for n := range addrs {
		i := (start + n) % len(addrs)
		cctx, cancel := ctx, context.CancelFunc(func() {})
		if n < len(addrs)-1 {
			cctx, cancel = context.WithTimeout(ctx, connectBudget)
		}
		cc, err := connect(cctx, addrs[i], creds, perRPC)
		cancel()
		if err == nil {
			return cc, i, nil
		}
		if ctx.Err() != nil {
			return nil, i, ctx.Err()
		}
		var ce *connectError
		if !errors.As(err, &ce) {
			ce = &connectError{addrs[i], err}
		}
		errs = append(errs, ce)
	}
	return nil, 0, &unreachableError{errs}
}

// callFirst runs call on the first reachable gateway of --addr. With
// failover, a call that fails with UNAVAILABLE (gateway not caught up,
// draining, ...) is tried on the next address: only for reads, since a
// write that failed that way may still have reached Kafka.
func (g *globals) callFirst(ctx context.Context, failover bool, call func(context.Context, confgatev1.ConfigServiceClient) error) error {
	addrs, err := g.addrList()
	if err != nil {
		return err
	}
	var lastAddr string
	var lastErr error
	for i := 0; i < len(addrs); i++ {
		cc, at, err := connectAny(ctx, addrs[i:], 0, g.creds, g.perRPC)
		if err != nil {
			if lastErr != nil {
				return g.callError(lastAddr, lastErr)
			}
			var ue *unreachableError
			if errors.As(err, &ue) {
				return ue
			}
			return g.callError(addrs[i], err)
		}
		i += at
		addr := addrs[i]
		g.log.Debug("connected", "addr", addr)
		err = call(ctx, confgatev1.NewConfigServiceClient(cc))
		cc.Close()
		if err != nil && failover && status.Code(err) == codes.Unavailable && i < len(addrs)-1 && ctx.Err() == nil {
			fmt.Fprintf(g.env.Stderr, "confgate: %s: %s; trying the next address\n", addr, status.Convert(err).Message())
			lastAddr, lastErr = addr, err
			continue
		}
		if err != nil {
			return g.callError(addr, err)
		}
		return nil
	}
	return g.callError(lastAddr, lastErr)
}

// rpcError is a failed call, described for people, keeping its gRPC code.
type rpcError struct {
	code codes.Code
	msg  string
}

func (e *rpcError) Error() string { return e.msg }

// errCode is the gRPC code of an error from callFirst (Unknown when none).
func errCode(err error) codes.Code {
	var re *rpcError
	if errors.As(err, &re) {
		return re.code
	}
	return status.Code(err)
}

// callError turns an error of a call to addr into one clear line.
func (g *globals) callError(addr string, err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &rpcError{codes.DeadlineExceeded, fmt.Sprintf("no answer from %s within %s (--timeout)", addr, g.timeout)}
	case errors.Is(err, context.Canceled):
		return &rpcError{codes.Canceled, "interrupted"}
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	code := st.Code()
	switch code {
	case codes.DeadlineExceeded:
		msg = fmt.Sprintf("no answer from %s within %s (--timeout)", addr, g.timeout)
	case codes.Canceled:
		msg = "interrupted"
	case codes.Unavailable:
		if strings.Contains(msg, "connection refused") {
			msg = fmt.Sprintf("no gateway reachable at %s (is `confgate dev` running?)", addr)
		} else {
			msg = fmt.Sprintf("gateway %s unavailable: %s", addr, msg)
		}
	case codes.InvalidArgument, codes.NotFound, codes.FailedPrecondition, codes.OutOfRange, codes.AlreadyExists:
		// The gateway's message already says what is wrong and how to fix it.
	case codes.PermissionDenied:
		// The gateway's message names the principal and what no grant covers.
		if !strings.HasPrefix(msg, "permission denied") {
			msg = "permission denied: " + msg
		}
	case codes.Unauthenticated:
		// The gateway's message says what failed and which credentials it
		// accepts; say what was sent.
		if !strings.HasPrefix(msg, "unauthenticated") {
			msg = "unauthenticated: " + msg
		}
		if src := g.token.source(); src != "" {
			msg += fmt.Sprintf(" (gateway %s refused %s)", addr, src)
		} else {
			msg += fmt.Sprintf(" (gateway %s; no token was sent: give one with --token-file, --token or %s)", addr, tokenEnv)
		}
	case codes.Unimplemented:
		msg = fmt.Sprintf("%s does not serve the confgate.v1 API (is it a confgate gateway?): %s", addr, msg)
	default:
		msg = fmt.Sprintf("gateway %s failed (%s): %s", addr, code, msg)
	}
	return &rpcError{code, msg}
}
