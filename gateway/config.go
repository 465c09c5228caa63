package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/store"

	"github.com/confgate/confgate/auth"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Gateway. Zero values take the documented defaults.
type Config struct {
	// Source is the store the gateway serves. Required.
	Source Source

	// ChunkBytes is the target size of one snapshot chunk or delta message.
	// It stays well below gRPC's 4 MiB default receive limit; an entry
	// larger than it travels alone. Default 1 MiB.
	ChunkBytes int
	// CacheBytes is the encoded-payload cache budget (ristretto). 0 turns
	// the cache off: everything still works, at the cost of re-encoding.
	// Deployments want it on: DefaultCacheBytes is the CLI's default.
	CacheBytes int64
	// ProgressInterval: how often a subscriber gets a progress message
	// with its cursor and the gateway's lag. Default 5s.
	ProgressInterval time.Duration
	// WaitTimeout bounds every wait for this gateway to reach a cursor:
	// resumes from a cursor it has not applied yet, min_cursor reads and
	// wait_applied writes. Past it the call fails with UNAVAILABLE, which
	// clients retry (possibly on another gateway). Default 5s.
	WaitTimeout time.Duration
	// MaxPendingBatches: a subscriber further behind the head than this
	// many batches gets its pending changes coalesced per key instead of
	// one delta per batch. Default 256.
	MaxPendingBatches int
	// MaxCoalescedBytes bounds a coalesced delta; past it the subscriber is
	// sent a snapshot instead. Default 3 MiB, under the 4 MiB client limit.
	MaxCoalescedBytes int

	// ConnReadBufferBytes is each connection's read buffer (gRPC's
	// ReadBufferSize, whose own default is 32 KiB). Every connection holds
	// it for life, and a subscriber's connection reads little: a request,
	// pings and window updates. Default 4 KiB.
	ConnReadBufferBytes int

	// MemoBytes bounds, in bytes across every selector group, the encoded
	// deltas kept so that subscribers at the head share one encoding. Past
	// it the oldest are dropped; a subscriber that needs one re-encodes
	// it (counted). Default 64 MiB.
	MemoBytes int64
	// MaxSnapshotBuilds bounds how many snapshot chunks are encoded at
	// once, gateway-wide; further requests wait their turn (or give up when
	// their caller leaves). Default 2 x GOMAXPROCS.
	MaxSnapshotBuilds int

	// MaxStreams bounds open streams per gateway, of every kind; past it
	// new streams get RESOURCE_EXHAUSTED and open ones are untouched.
	// Health Watch streams may use a reserve of 1% (at least 16) above it,
	// so load balancers' checks still work on a full gateway. Default
	// 50,000.
	MaxStreams int
	// MaxStreamsPerConn is HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: the
	// streams one connection may have open at once. Default 1,000.
	MaxStreamsPerConn uint32
	// MaxResetsPerSecond bounds, per connection, how many streams a client
	// may cancel per second (averaged, with a burst of ten times it) before
	// the connection is closed: an HTTP/2 rapid-reset flood costs the
	// gateway work the client never waits for. Default 200.
	MaxResetsPerSecond int
	// MaxConnections bounds open gRPC connections; past it new ones are
	// accepted and closed at once, so the listener never stalls on the file
	// descriptor limit and the admin listener keeps working. Default 0:
	// derived from the process's file descriptor limit (less headroom for
	// Kafka connections, the admin listener and files).
	MaxConnections int

	// Keepalive and connection age (grpc keepalive.ServerParameters).
	// MaxConnectionAge makes long-lived streams move, so connections spread
	// onto gateways added later; clients resume by cursor on the new one.
	KeepaliveTime         time.Duration // default 30s
	KeepaliveTimeout      time.Duration // default 10s
	MaxConnectionAge      time.Duration // default 0: unlimited
	MaxConnectionAgeGrace time.Duration // default 30s
	// ShutdownGrace bounds a graceful stop before connections are cut.
	// Default 10s.
	ShutdownGrace time.Duration

	// Authenticator identifies callers (verified client certificates,
	// static tokens, JWTs); nil lets everyone in as the anonymous
	// principal.
	Authenticator *auth.Authenticator
	// Policy decides what each principal may read and write; nil allows
	// everything. Serve runs its watcher; open streams are re-checked when
	// it changes.
	Policy *auth.PolicyWatcher
	// MaxKeyBytes, MaxSelectorPrefixes and MaxValueBytes bound requests:
	// a key named by Get, Put or Delete, a Subscribe or GetSnapshot
	// selector, and a Put's value. Past them a request is INVALID_ARGUMENT
	// naming the limit. They may only tighten the rules every gateway
	// applies to the topic (keyspace.MaxKeyLen, keyspace.MaxPrefixes,
	// store.MaxValueBytes), which are also their defaults.
	MaxKeyBytes         int
	MaxSelectorPrefixes int
	MaxValueBytes       int
	// MaxStreamsPerPrincipal bounds the open streams of one principal;
	// past it new streams get RESOURCE_EXHAUSTED. Default 1,000.
	MaxStreamsPerPrincipal int
	// MaxWritesPerSecond bounds one principal's writes (token bucket,
	// burst ten times it); past it writes get RESOURCE_EXHAUSTED.
	// Default 100.
	MaxWritesPerSecond int
	// Name names this gateway in the audit headers of the writes it makes
	// (GatewayHeader); at most 256 bytes of visible text. Default: the host
	// name.
	Name string

	// Fleet is the fleet view (fleet.Fleet): clients' identities and
	// reports are published to it, GetFleet reads it. nil: Report and
	// GetFleet answer UNIMPLEMENTED.
	Fleet FleetView
	// FleetReportInterval is how often clients report while nothing
	// changes; a client silent for three intervals is "not reporting".
	// Default 5s, the shipped clients' interval.
	FleetReportInterval time.Duration

	// TLS, when set, serves gRPC over TLS with it (certificates, client
	// certificate checks); nil serves plaintext.
	TLS *tls.Config
	// AdminTLS serves the admin listener over TLS too, with the same
	// configuration (so with client certificate checks when TLS requires
	// them: load balancers probing /readyz then need a certificate).
	// Default plain HTTP.
	AdminTLS bool

	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the gateway's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// Gatherer serves /metrics on the admin handler; nil serves none.
	Gatherer prometheus.Gatherer
}

// DefaultCacheBytes is the cache budget `confgate serve` runs with unless
// told otherwise (a zero Config.CacheBytes means no cache).
const DefaultCacheBytes = 64 << 20

// Defaults returns the default of every tunable field: what a zero field
// means. The CLI's flags show the same values.
func Defaults() Config {
	return Config{
		ChunkBytes:            1 << 20,
		ConnReadBufferBytes:   4 << 10,
		ProgressInterval:      5 * time.Second,
		FleetReportInterval:   5 * time.Second,
		WaitTimeout:           5 * time.Second,
		MaxPendingBatches:     256,
		MaxCoalescedBytes:     3 << 20,
		MemoBytes:             64 << 20,
		MaxSnapshotBuilds:     2 * runtime.GOMAXPROCS(0),
		MaxStreams:            50000,
		MaxStreamsPerConn:     1000,
		MaxResetsPerSecond:    200,
		KeepaliveTime:         30 * time.Second,
		KeepaliveTimeout:      10 * time.Second,
		MaxConnectionAgeGrace: 30 * time.Second,
		ShutdownGrace:         10 * time.Second,

		MaxKeyBytes:            keyspace.MaxKeyLen,
		MaxSelectorPrefixes:    keyspace.MaxPrefixes,
		MaxValueBytes:          store.MaxValueBytes,
		MaxStreamsPerPrincipal: 1000,
		MaxWritesPerSecond:     100,
	}
}

// orDefault sets *v to d when *v is zero (or negative).
func orDefault[T ~int | ~int64 | ~uint32](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

func (c *Config) withDefaults() (Config, error) {
	out := *c
	if out.Source == nil {
		return out, errors.New("gateway: no source configured")
	}
	if out.AdminTLS && out.TLS == nil {
		return out, errors.New("gateway: the admin listener can serve TLS only with a TLS configuration")
	}
	d := Defaults()
	orDefault(&out.ChunkBytes, d.ChunkBytes)
	orDefault(&out.ConnReadBufferBytes, d.ConnReadBufferBytes)
	if out.ChunkBytes > 3<<20 {
		return out, errors.New("gateway: chunk size must stay under 3 MiB so messages fit gRPC's 4 MiB default limit")
	}
	orDefault(&out.ProgressInterval, d.ProgressInterval)
	orDefault(&out.FleetReportInterval, d.FleetReportInterval)
	orDefault(&out.WaitTimeout, d.WaitTimeout)
	orDefault(&out.MaxPendingBatches, d.MaxPendingBatches)
	orDefault(&out.MaxCoalescedBytes, d.MaxCoalescedBytes)
	orDefault(&out.MemoBytes, d.MemoBytes)
	orDefault(&out.MaxSnapshotBuilds, d.MaxSnapshotBuilds)
	orDefault(&out.MaxStreams, d.MaxStreams)
	orDefault(&out.MaxStreamsPerConn, d.MaxStreamsPerConn)
	orDefault(&out.MaxResetsPerSecond, d.MaxResetsPerSecond)
	orDefault(&out.KeepaliveTime, d.KeepaliveTime)
	orDefault(&out.KeepaliveTimeout, d.KeepaliveTimeout)
	orDefault(&out.MaxConnectionAgeGrace, d.MaxConnectionAgeGrace)
	orDefault(&out.ShutdownGrace, d.ShutdownGrace)
	orDefault(&out.MaxKeyBytes, d.MaxKeyBytes)
	orDefault(&out.MaxSelectorPrefixes, d.MaxSelectorPrefixes)
	orDefault(&out.MaxValueBytes, d.MaxValueBytes)
	if out.MaxKeyBytes > d.MaxKeyBytes || out.MaxSelectorPrefixes > d.MaxSelectorPrefixes || out.MaxValueBytes > d.MaxValueBytes {
		return out, fmt.Errorf("gateway: request limits may only tighten the topic's rules: keys at most %d bytes, selectors at most %d prefixes, values at most %d bytes", d.MaxKeyBytes, d.MaxSelectorPrefixes, d.MaxValueBytes)
	}
	orDefault(&out.MaxStreamsPerPrincipal, d.MaxStreamsPerPrincipal)
	orDefault(&out.MaxWritesPerSecond, d.MaxWritesPerSecond)
	if out.Name == "" {
		out.Name, _ = os.Hostname()
	}
	if len(out.Name) > maxNameBytes || !utf8.ValidString(out.Name) || strings.IndexFunc(out.Name, keyspace.Hidden) >= 0 {
		return out, fmt.Errorf("gateway: name %s: want at most %d bytes of visible UTF-8 text (it goes into the %s header of every write)", keyspace.Quote(out.Name), maxNameBytes, GatewayHeader)
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out, nil
}
