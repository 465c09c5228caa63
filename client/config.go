package client

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// Defaults of the Config knobs.
const (
	DefaultBackoffMin        = 100 * time.Millisecond
	DefaultBackoffMax        = 10 * time.Second
	DefaultStateFileInterval = time.Second
	DefaultKeepaliveTime     = 20 * time.Second
	DefaultKeepaliveTimeout  = 10 * time.Second
	DefaultReportInterval    = 5 * time.Second
)

// Bounds of Config.ClientID, Service and Labels (those of ClientInfo in
// the protocol), of the rejections a view keeps, and of a rejection's
// reason.
const (
	maxClientIDBytes   = 128
	maxServiceBytes    = 128
	maxLabels          = 16
	maxLabelBytes      = 128 // a label's key, and its value
	maxRejections      = 100
	maxRejectionReason = 1024
)

// maxRecvMsgSize bounds one received message. Gateways keep snapshot chunks
// well under it; it only has to fit the largest single entry plus framing.
const maxRecvMsgSize = 16 << 20

// Config configures a subscription. Only Addrs is required.
type Config struct {
	// Addrs are the gateway addresses ("host:port", or any gRPC target).
	// At least one. Gateways are interchangeable, so the client spreads
	// load by starting at a random position in a shuffled copy of the list
	// and moves to the next address after every lost stream. A single
	// address behind a load balancer works too.
	Addrs []string

	// Prefixes is the selector: the keys to mirror, by prefix. Empty, or a
	// "" among them, selects every key. Prefixes are validated and
	// normalized by the same rules as the gateways (internal/keyspace).
	Prefixes []string

	// DialOptions are passed to grpc.NewClient for every connection.
	// Default (nil): insecure transport credentials, for loopback and
	// trusted networks. When set, it must include transport credentials
	// (grpc.WithTransportCredentials) or a credentials bundle.
	DialOptions []grpc.DialOption

	// Token is a bearer token sent on every call as "authorization:
	// Bearer <token>" metadata (grpc PerRPCCredentials), for gateways that
	// authenticate callers with --auth-tokens or --auth-jwks: a static
	// token made by `confgate token new`, or a JWT. Not together with
	// TokenFile. Default "": no token (a gateway with client certificate
	// authentication reads the certificate in DialOptions' TLS config).
	Token string

	// TokenFile is the path of a file holding the bearer token (surrounding
	// whitespace is ignored), re-read when it changes: the file is checked
	// at most once a second, by the next call, and read again when it was
	// replaced, resized or modified, so rotated tokens (a Kubernetes
	// projected service-account token, a SPIFFE JWT-SVID an agent
	// rewrites) are used without a restart; a stream keeps the token it
	// was opened with, and its reconnects send the new one. A file missing
	// or invalid at Subscribe is an error; one that becomes unreadable or
	// invalid later leaves the last good token in use (logged), since a
	// rotation in progress is the likely cause. Not together with Token.
	TokenFile string

	// InsecureToken lets Token or TokenFile travel over connections
	// without transport security. By default a token is only sent over
	// TLS (Subscribe fails otherwise: the credentials require transport
	// security), except when every address is on the loopback interface
	// (127.0.0.0/8, ::1, "localhost") or a Unix socket, where no network
	// sees it. Set it only on a network you trust as much as the
	// token: anyone who can read the traffic can replay the token.
	InsecureToken bool

	// BackoffMin and BackoffMax bound the wait before reconnecting:
	// exponential from BackoffMin up to BackoffMax, with full jitter (a
	// uniform draw between 0 and the bound), so that clients of a dead
	// gateway do not reconnect in lockstep. The exponent resets once a
	// stream has delivered a message and stayed up for BackoffMax.
	// Defaults: DefaultBackoffMin (100ms) and DefaultBackoffMax (10s).
	// Lower values recover faster and put more load on gateways during an
	// outage.
	BackoffMin, BackoffMax time.Duration

	// KeepaliveTime: a connection silent this long is pinged, and one
	// whose ping is not answered within KeepaliveTimeout is closed, so the
	// view moves to another gateway. It detects a gateway that vanished
	// without closing the connection (host lost, network partition),
	// which a stream would otherwise wait on until TCP gives up, many
	// minutes later. Defaults: DefaultKeepaliveTime (20s) and
	// DefaultKeepaliveTimeout (10s). gRPC never pings more often than
	// every 10s, and gateways refuse pings more often than every 5s. A
	// negative KeepaliveTime turns pings off.
	KeepaliveTime, KeepaliveTimeout time.Duration

	// OnChange, when set, is called for every change to the view, in order,
	// from a single goroutine, after the view has been updated (Get already
	// returns the new state). It runs on the subscription's goroutine: while
	// it runs, no further messages are applied, so it should return quickly
	// (a slow callback makes the gateway coalesce or re-snapshot this
	// subscriber, which is safe). It must not call Close.
	OnChange func(Event)

	// Observe, when set, is called with every message the view accepted,
	// in order, tagged with the stream it came on. It is for audits and
	// history checkers, not for reading config (use OnChange): it runs on
	// the subscription's goroutine and must return quickly. Messages a view
	// rejects (a cursor going backwards, a snapshot failing its checks) are
	// not observed; the stream they came on ends.
	Observe func(Observation)

	// StateFile, when set, is the path of the last-known-good file: the
	// view and its cursor, so that a restarted service boots from it while
	// no gateway answers, and then resumes with deltas instead of a full
	// snapshot. Empty (the default): no file.
	//
	// Subscribe reads the file before it returns: when it is valid and was
	// made for the same selector, Get and Range serve its entries at once,
	// WaitLoaded returns at once, Status reports FromFile and Stale until a
	// gateway answers, and the first stream resumes from the file's
	// cursor. A missing file is normal (first start); a corrupt, truncated
	// or unreadable file, or one made for another selector, is ignored as
	// a whole with a logged warning (the view then starts empty, as
	// without a file) and reported in Status.StateFileError.
	//
	// The file is written atomically (a temporary file in the same
	// directory, fsynced, renamed over the path, then the directory
	// fsynced), with mode 0600, by a goroutine of its own, never by the one
	// applying gateway messages: at once after the first snapshot, then at
	// most every StateFileInterval while the view or its cursor moves, and
	// once more when the subscription ends (Close). Leftover temporary
	// files ("<name>.tmp-*", from a crash mid-write) are removed at
	// Subscribe. One View per file: two views sharing a path overwrite
	// each other. The layout is documented in statefile.go.
	StateFile string

	// StateFileInterval is the least time between two writes of the state
	// file. Each write rewrites the whole view, so a large view with a
	// moving cursor costs one full write per interval; a longer interval
	// writes less and keeps an older cursor (a restarted service then
	// replays more deltas, or gets a snapshot when the gateways no longer
	// hold the history after it). Whatever the interval, the writer spends
	// at most about 5% of the time writing: after a write that took d, the
	// next waits at least 20*d (a 100 MB view takes about 0.27 s to write
	// on a 2-core test machine, BenchmarkStateFileWrite100MB, so it is
	// written at most every 5.5 s). Default: DefaultStateFileInterval (1s).
	StateFileInterval time.Duration

	// Logger receives connection changes (info) and gateway protocol
	// violations (warn). Default: slog.Default().
	Logger *slog.Logger

	// ResumeCursor, when set, is a cursor in its text form (as View.Cursor
	// and the CLI print it) to start after: the first stream resumes from
	// it, so a gateway that still holds the history after it sends only
	// the changes since (else a snapshot flagged as a reset), and nothing
	// behind it is ever accepted. The view starts empty at that cursor:
	// until a snapshot replaces it, it holds only the keys put since, its
	// Digest is not the gateway's, and a deletion of a key it does not
	// hold changes nothing (Observe still sees it). It is for tools that
	// replay the changes after a known point (confgate watch --from); a
	// service that restarts wants StateFile, which also keeps the entries.
	// Not together with StateFile. Default (""): start with a snapshot.
	ResumeCursor string

	// KeepAddrOrder, when true, tries Addrs in the order given, starting at
	// the first, instead of from a random position in a shuffled copy. For
	// a tool whose user names the preferred gateway first; services leave
	// it false, so that their load spreads over the gateways.
	KeepAddrOrder bool

	// OnStreamEnd, when set, is called each time a stream to a gateway
	// ended with an error, before the view waits to reconnect, with why
	// and what happens next; not when the view is closed or its context is
	// done. It runs on the subscription's goroutine, in order with
	// OnChange and Observe, and must return quickly and not call Close (it
	// may cancel the context given to Subscribe, which stops the view
	// instead of reconnecting). For tools that report every disconnect or
	// give up on errors they deem permanent; Status.LastError keeps the
	// last one for everyone else.
	OnStreamEnd func(StreamEnd)

	// ClientID identifies this process in the fleet view (confgate fleet,
	// GetFleet): sent with every Subscribe and every report. Up to 128
	// printable ASCII characters, without spaces. Default (""): one is
	// generated when the View is made (16 random bytes, hex) and kept for
	// the life of the View, across reconnects; a restarted process, or a
	// second View, gets another. Set it to something stable (a pod name)
	// to recognise a process across restarts; two live Views should not
	// share one.
	ClientID string

	// Service is the service this process belongs to, e.g. "payments",
	// for the fleet view's per-service summaries. Up to 128 bytes of
	// UTF-8. Optional.
	Service string

	// Labels are free labels of this process for the fleet view (version,
	// zone, host). At most 16; keys (not empty) and values up to 128
	// bytes of UTF-8 each. The map is copied at Subscribe.
	Labels map[string]string

	// ReportInterval is how often the view reports what it has applied to
	// the gateway of its stream (the Report call: its cursor, its Digest,
	// the values rejected with View.Reject), so the fleet view can tell a
	// client in sync from one behind or diverged. A view also reports at
	// once after it applied a snapshot or delta, after a reconnect and
	// after Reject or Accept, but never more often than every
	// ReportInterval/5, so a burst of changes costs one or two reports.
	// Reports go over the stream's connection, one at a time; one that
	// fails is logged at debug level and the next tick tries again. A
	// gateway that does not know Report (an older version) answers
	// UNIMPLEMENTED: the view then stops reporting until it reconnects,
	// without logging more than a debug line. Default:
	// DefaultReportInterval (5s). A negative value turns reporting off
	// (Subscribe still sends ClientID, Service and Labels).
	ReportInterval time.Duration

	// ReportDigestHook is for tests only: when set, it is called with the
	// view's digest before every report and its result is reported
	// instead, so a test can make a client look diverged to the fleet view.
	// It does not change View.Digest or anything the view checks. Leave it
	// nil in production code.
	ReportDigestHook func(digest []byte) []byte
}

// StreamEnd is a stream that ended, passed to Config.OnStreamEnd.
type StreamEnd struct {
	// Addr is the gateway address of the stream.
	Addr string
	// Err is why it ended, as Status.LastError reports it: it wraps the
	// gRPC status (status.Code and status.FromError see its code) or the
	// gateway protocol violation the view refused.
	Err error
	// Stopped is true when the subscription stopped for good (the gateway
	// refused the selector); the fields below are then zero.
	Stopped bool
	// Backoff is the wait before the next attempt, to NextAddr.
	Backoff  time.Duration
	NextAddr string
	// ResumeCursor is the cursor the next attempt resumes from (text
	// form), or "" when it asks for a fresh snapshot.
	ResumeCursor string
}

// Observation is one accepted message and the stream it came on.
type Observation struct {
	// Stream numbers the streams of this view, from 1; it changes on every
	// reconnect.
	Stream int
	// Addr is the gateway address the stream was opened to.
	Addr string
	// ResumeCursor is the cursor the stream was opened with (nil: none).
	ResumeCursor []byte
	Message      *confgatev1.SubscribeResponse
}

// settings is a validated Config with defaults filled in.
type settings struct {
	addrs             []string
	selector          keyspace.Selector
	dialOptions       []grpc.DialOption
	backoffMin        time.Duration
	backoffMax        time.Duration
	onChange          func(Event)
	observe           func(Observation)
	log               *slog.Logger
	stateFile         string
	stateFileInterval time.Duration
	stateFileDuty     int // see stateFileDuty; tests lower it
	resume            *cursor.Cursor
	keepAddrOrder     bool
	onStreamEnd       func(StreamEnd)
	clientID          string
	service           string
	labels            map[string]string
	reportInterval    time.Duration // <= 0: no reports
	reportDigestHook  func([]byte) []byte
}

func (c Config) settings() (settings, error) {
	if len(c.Addrs) == 0 {
		return settings{}, errors.New("client: Config.Addrs is empty: name at least one gateway address")
	}
	for i, a := range c.Addrs {
		if a == "" {
			return settings{}, fmt.Errorf("client: Config.Addrs[%d] is empty", i)
		}
	}
	sel, err := keyspace.NewSelector(c.Prefixes)
	if err != nil {
		return settings{}, fmt.Errorf("client: %w", err)
	}
	s := settings{
		addrs:             append([]string(nil), c.Addrs...),
		selector:          sel,
		dialOptions:       c.DialOptions,
		backoffMin:        c.BackoffMin,
		backoffMax:        c.BackoffMax,
		onChange:          c.OnChange,
		observe:           c.Observe,
		log:               c.Logger,
		stateFile:         c.StateFile,
		stateFileInterval: c.StateFileInterval,
		stateFileDuty:     stateFileDuty,
		keepAddrOrder:     c.KeepAddrOrder,
		onStreamEnd:       c.OnStreamEnd,
	}
	if err := c.identity(&s); err != nil {
		return settings{}, err
	}
	if s.resume, err = c.resumeCursor(); err != nil {
		return settings{}, err
	}
	if s.dialOptions == nil {
		s.dialOptions = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	if c.KeepaliveTimeout < 0 {
		return settings{}, errors.New("client: Config.KeepaliveTimeout must not be negative")
	}
	if c.KeepaliveTime >= 0 {
		kp := keepalive.ClientParameters{Time: c.KeepaliveTime, Timeout: c.KeepaliveTimeout}
		if kp.Time == 0 {
			kp.Time = DefaultKeepaliveTime
		}
		if kp.Timeout == 0 {
			kp.Timeout = DefaultKeepaliveTimeout
		}
		// First, so that keepalive parameters in DialOptions win.
		s.dialOptions = append([]grpc.DialOption{grpc.WithKeepaliveParams(kp)}, s.dialOptions...)
	}
	if s.backoffMin < 0 || s.backoffMax < 0 {
		return settings{}, errors.New("client: Config.BackoffMin and BackoffMax must not be negative")
	}
	if s.backoffMin == 0 {
		s.backoffMin = DefaultBackoffMin
	}
	if s.backoffMax == 0 {
		s.backoffMax = max(DefaultBackoffMax, s.backoffMin)
	}
	if s.backoffMin > s.backoffMax {
		return settings{}, fmt.Errorf("client: Config.BackoffMin (%v) is greater than BackoffMax (%v)", s.backoffMin, s.backoffMax)
	}
	if s.stateFileInterval < 0 {
		return settings{}, errors.New("client: Config.StateFileInterval must not be negative")
	}
	if s.stateFileInterval == 0 {
		s.stateFileInterval = DefaultStateFileInterval
	}
	if s.stateFile != "" {
		s.stateFile = filepath.Clean(s.stateFile)
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("component", "confgate/client", "selector", sel.String())
	if err := c.tokenOption(&s); err != nil {
		return settings{}, err
	}
	// grpc.NewClient does not connect; it checks the target and options, so
	// a bad address or missing credentials fail here, not in the background.
	for _, a := range s.addrs {
		cc, err := grpc.NewClient(a, s.dialOptions...)
		if err != nil {
			return settings{}, fmt.Errorf("client: gateway address %q: %w", a, err)
		}
		_ = cc.Close()
	}
	return s, nil
}

// resumeCursor parses ResumeCursor; nil when it is not set.
func (c Config) resumeCursor() (*cursor.Cursor, error) {
	if c.ResumeCursor == "" {
		return nil, nil
	}
	if c.StateFile != "" {
		return nil, errors.New("client: Config.ResumeCursor and StateFile do not go together: the state file holds its own cursor")
	}
	cur, err := cursor.Parse(c.ResumeCursor)
	if err != nil {
		return nil, fmt.Errorf("client: Config.ResumeCursor: %w", err)
	}
	return &cur, nil
}

// tokenOption adds Token or TokenFile to s.dialOptions as per-RPC
// credentials. Plaintext to a non-loopback address is refused: here, with
// a message saying what to do, when DialOptions is nil (the default
// insecure transport); by grpc.NewClient in settings when DialOptions has
// insecure transport credentials (the token credentials require transport
// security); by gRPC at connection time for any other transport that turns
// out to be without privacy.
func (c Config) tokenOption(s *settings) error {
	if c.Token == "" && c.TokenFile == "" {
		return nil
	}
	if c.Token != "" && c.TokenFile != "" {
		return errors.New("client: Config.Token and TokenFile exclude each other: set one")
	}
	requireTLS := !c.InsecureToken
	if requireTLS {
		local := true
		for _, a := range s.addrs {
			local = local && loopbackTarget(a)
		}
		requireTLS = !local
	}
	if requireTLS && c.DialOptions == nil {
		return errors.New("client: Config.Token or TokenFile would be sent in plaintext to a gateway that is not on this host: " +
			"set DialOptions with TLS transport credentials (grpc.WithTransportCredentials(credentials.NewTLS(...))), " +
			"or Config.InsecureToken on a network you trust")
	}
	creds, err := newTokenCredentials(c.Token, c.TokenFile, requireTLS, s.log)
	if err != nil {
		if c.TokenFile != "" {
			return fmt.Errorf("client: Config.TokenFile: %w", err)
		}
		return fmt.Errorf("client: Config.Token: %w", err)
	}
	// A copy: the caller's DialOptions slice is not appended to.
	s.dialOptions = append(append([]grpc.DialOption(nil), s.dialOptions...), grpc.WithPerRPCCredentials(creds))
	return nil
}
