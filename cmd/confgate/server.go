package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/confgate/confgate/fleet"
	"github.com/confgate/confgate/gateway"
	cgnode "github.com/confgate/confgate/node"
	"github.com/confgate/confgate/store"
	"github.com/spf13/pflag"
)

// serverFlags are the tuning flags serve and dev share. Their defaults are
// store.Defaults and gateway.Defaults, so --help shows them.
type serverFlags struct {
	listen      string
	adminListen string
	adminTLS    bool
	topic       string
	partitions  int32

	historyBatches         int
	historyBytes           int64
	tombstoneRetention     time.Duration
	noBootstrapDiffs       bool
	maxBatchRecords        int
	fetchMaxWait           time.Duration
	fetchMaxPartitionBytes int64
	probeInterval          time.Duration
	staleAfter             time.Duration
	produceTimeout         time.Duration
	producerLinger         time.Duration
	transactionalID        string
	transactionTimeout     time.Duration
	commitGroupOps         int
	recentRequestIDs       int
	recentRequestIDBytes   int64
	setHoldTimeout         time.Duration
	setHoldBytes           int64
	fleet                  bool
	fleetGrace             time.Duration
	fleetReportInterval    time.Duration

	chunkBytes            int64
	cacheBytes            int64
	progressInterval      time.Duration
	waitTimeout           time.Duration
	maxPendingBatches     int
	maxCoalescedBytes     int64
	keepaliveTime         time.Duration
	keepaliveTimeout      time.Duration
	maxConnectionAge      time.Duration
	maxConnectionAgeGrace time.Duration
	shutdownGrace         time.Duration
	memoBytes             int64
	connReadBuffer        int64
	maxSnapshotBuilds     int
	maxStreams            int
	maxStreamsPerConn     uint32
	maxResetsPerSecond    int
	maxConnections        int
	maxTombstones         int
	maxStreamsPrincipal   int
	maxKeyBytes           int
	maxSelectorPrefixes   int
	maxValueBytes         int
	maxWritesPerSecond    int
	gatewayName           string
	maxTombstoneBytes     int64

	tls  serverTLS
	auth serverAuth
}

func (f *serverFlags) register(fs *pflag.FlagSet) {
	// Defaults come from the packages, so --help and a zero Config agree.
	sd, gd := store.Defaults(), gateway.Defaults()
	fs.StringVar(&f.listen, "listen", defaultAddr, "gRPC listen address host:port; port 0 picks a free port")
	fs.StringVar(&f.adminListen, "admin-listen", "127.0.0.1:9464", "admin HTTP address for /healthz, /readyz (200 only once caught up), /debug/state and /metrics; empty disables it; with auth flags, /debug/state and /metrics need a credential that may read every key")
	fs.BoolVar(&f.adminTLS, "admin-tls", false, "serve the admin listener over TLS with the gRPC certificate (--tls-cert) and its client certificate checks; load balancers probing /readyz then speak TLS")
	fs.Int32Var(&f.partitions, "partitions", sd.Partitions, "partitions of a topic the gateway creates; more spread the write load, and a key always lives in the one Kafka's default partitioner picks")

	fs.IntVar(&f.historyBatches, "history-batches", sd.HistoryBatches, "length of the change window resumes are served from, in batches: a longer window turns more resumes into cheap deltas instead of snapshots, at the cost of memory")
	f.historyBytes = sd.HistoryBytes
	fs.Var(byteSize{&f.historyBytes}, "history-bytes", "memory bound of the change window (see --history-batches)")
	fs.DurationVar(&f.tombstoneRetention, "tombstone-retention", sd.TombstoneRetention, "how long deleted keys are remembered, so a subscriber resuming from older than the change window still learns of deletes without a full snapshot; mirror the topic's delete.retention.ms")
	fs.BoolVar(&f.noBootstrapDiffs, "no-bootstrap-diffs", false, "answer every resume from a cursor older than this gateway's start with a snapshot; by default such a resume gets a diff when the records after the cursor are younger than the topic's delete.retention.ms (the log still held their tombstones); for brokers that do not honour delete.retention.ms")
	fs.IntVar(&f.maxBatchRecords, "max-batch-records", sd.MaxBatchRecords, "most records one history batch holds, which bounds the size of the deltas built from it")
	fs.DurationVar(&f.fetchMaxWait, "fetch-max-wait", sd.FetchMaxWait, "how long a broker may hold an empty fetch (fetch.max.wait.ms); it does not delay records: a fetch returns as soon as any arrive")
	f.fetchMaxPartitionBytes = int64(sd.FetchMaxPartitionBytes)
	fs.Var(byteSize{&f.fetchMaxPartitionBytes}, "fetch-max-partition-bytes", "most a broker returns per partition per fetch (max.partition.fetch.bytes); larger speeds up bootstrap, at the cost of memory")
	fs.DurationVar(&f.probeInterval, "probe-interval", sd.ProbeInterval, "how often topic identity and end offsets (lag) are checked; shorter notices a recreated topic sooner, at the cost of more metadata requests")
	fs.DurationVar(&f.staleAfter, "stale-after", sd.StaleAfter, "with no successful contact with Kafka for this long the gateway reports stale (it keeps serving its last state) and writes fail fast")
	fs.DurationVar(&f.producerLinger, "producer-linger", sd.ProducerLinger, "how long a write may wait to share a produce request (linger.ms); 0 keeps writes fastest, raise only for bulk writers")
	fs.DurationVar(&f.produceTimeout, "produce-timeout", sd.ProduceTimeout, "bound on one write, retries included (delivery.timeout.ms); longer rides out broker failovers, shorter answers callers sooner")
	fs.StringVar(&f.transactionalID, "transactional-id", sd.TransactionalID, "Kafka transactional.id of the serialization point every gateway of the topic shares for conditional, retry-safe and change-set writes (default confgate-TOPIC); all gateways of a topic must use the same, and their Kafka principal needs WRITE and DESCRIBE on it")
	fs.DurationVar(&f.transactionTimeout, "transaction-timeout", sd.TransactionTimeout, "Kafka transaction.timeout.ms of those writes: a gateway killed mid-transaction holds back readers of the partitions it wrote until the broker aborts it after this long, or another gateway writes")
	fs.IntVar(&f.commitGroupOps, "commit-group-ops", sd.CommitGroupOps, "most operations one transaction carries when conditional or retry-safe writes queue up (group commit)")
	fs.IntVar(&f.recentRequestIDs, "recent-request-ids", sd.RecentRequestIDs, "request IDs remembered from applied records, so a retry of a write that landed is answered with its original result; a retry older than the window is recognized only while its record is in the log")
	f.recentRequestIDBytes = sd.RecentRequestIDBytes
	fs.Var(byteSize{&f.recentRequestIDBytes}, "recent-request-id-bytes", "memory bound of the remembered request IDs")
	fs.DurationVar(&f.setHoldTimeout, "set-hold-timeout", sd.SetHoldTimeout, "how long an incomplete change set (only a foreign producer writes one) may hold back its partitions before its records are applied as they are")
	fs.BoolVar(&f.fleet, "fleet", true, "keep the fleet view (--fleet=false turns it off): publish this gateway's clients (identity, applied cursor, digest, rejections) to the compacted topic TOPIC.fleet, created like the config topic, read every gateway's from it, and answer Report and GetFleet (confgate fleet)")
	fs.DurationVar(&f.fleetReportInterval, "fleet-report-interval", gd.FleetReportInterval, "the clients' report interval (the shipped clients' default): a connected client silent for three of them is not reporting")
	fs.DurationVar(&f.fleetGrace, "fleet-grace", time.Minute, "how long a client gone from this gateway stays in the fleet view before it is removed (a client that moved to another gateway stays, as that gateway's)")
	f.setHoldBytes = sd.SetHoldBytes
	fs.Var(byteSize{&f.setHoldBytes}, "set-hold-bytes", "memory bound of records held back for incomplete change sets")

	f.chunkBytes = int64(gd.ChunkBytes)
	fs.Var(byteSize{&f.chunkBytes}, "chunk-bytes", "target size of one snapshot chunk or delta message; must stay under 3MiB so messages fit gRPC's 4MiB default limit; an entry larger than it travels alone")
	f.cacheBytes = gateway.DefaultCacheBytes
	fs.Var(byteSize{&f.cacheBytes}, "cache-bytes", "budget of the encoded-payload cache (snapshot chunks, encoded entries); 0 turns it off: everything still works, at the cost of re-encoding")
	fs.DurationVar(&f.progressInterval, "progress-interval", gd.ProgressInterval, "how often a subscriber gets a progress message with its cursor and the gateway's lag; shorter lets clients notice staleness sooner, at the cost of traffic")
	fs.DurationVar(&f.waitTimeout, "wait-timeout", gd.WaitTimeout, "bound on every wait for this gateway to reach a cursor (resumes from a newer cursor, --min-cursor reads, --wait writes); past it the call fails with UNAVAILABLE, which clients retry, possibly on another gateway")
	fs.IntVar(&f.maxPendingBatches, "max-pending-batches", gd.MaxPendingBatches, "a subscriber further behind the head than this many batches gets its pending changes coalesced per key (latest wins) instead of one delta per batch")
	f.maxCoalescedBytes = int64(gd.MaxCoalescedBytes)
	fs.Var(byteSize{&f.maxCoalescedBytes}, "max-coalesced-bytes", "bound on one coalesced delta; past it a slow subscriber is sent a snapshot instead; keep it under the 4MiB client limit")
	fs.DurationVar(&f.keepaliveTime, "keepalive-time", gd.KeepaliveTime, "ping a connection idle this long to check it is alive; shorter detects dead clients sooner, at the cost of traffic")
	fs.DurationVar(&f.keepaliveTimeout, "keepalive-timeout", gd.KeepaliveTimeout, "close a connection whose keepalive ping is not answered within this")
	fs.DurationVar(&f.maxConnectionAge, "max-connection-age", gd.MaxConnectionAge, "close connections older than this (GOAWAY) so long-lived streams spread onto gateways added later; clients resume by cursor on the new one (default 0: unlimited)")
	fs.DurationVar(&f.maxConnectionAgeGrace, "max-connection-age-grace", gd.MaxConnectionAgeGrace, "time open streams get after --max-connection-age before the connection is cut")
	f.memoBytes = gd.MemoBytes
	f.connReadBuffer = int64(gd.ConnReadBufferBytes)
	fs.Var(byteSize{&f.connReadBuffer}, "conn-read-buffer", "read buffer of each client connection, held for the connection's life (gRPC's own default is 32 KiB); subscribers send little, so a small one saves memory at tens of thousands of connections")
	fs.Var(byteSize{&f.memoBytes}, "memo-bytes", "memory bound of the encoded deltas kept for subscribers at the head, across all selectors; past it the oldest are dropped and re-encoded when needed")
	fs.IntVar(&f.maxSnapshotBuilds, "max-snapshot-builds", 0, "snapshot chunks encoded at once, gateway-wide; more requests wait their turn (default 0: twice the number of CPUs)")
	fs.IntVar(&f.maxStreams, "max-streams", gd.MaxStreams, "open streams per gateway, of every kind; past it new streams get RESOURCE_EXHAUSTED and open ones are untouched (health Watch streams have a small reserve above it)")
	fs.Uint32Var(&f.maxStreamsPerConn, "max-streams-per-conn", gd.MaxStreamsPerConn, "streams one connection may have open at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS)")
	fs.IntVar(&f.maxResetsPerSecond, "max-resets-per-second", gd.MaxResetsPerSecond, "streams one connection may cancel per second (burst ten times it) before the gateway closes the connection: stops HTTP/2 rapid-reset floods")
	fs.IntVar(&f.maxConnections, "max-connections", 0, "open gRPC connections; past it new ones are closed at once (default 0: derived from the file descriptor limit, which the gateway raises to its hard limit at start)")
	fs.IntVar(&f.maxTombstones, "max-tombstones", sd.MaxTombstones, "deleted keys remembered for resumes (see --tombstone-retention); past it the oldest are forgotten early and resumes from before them get a snapshot")
	f.maxTombstoneBytes = sd.MaxTombstoneBytes
	fs.Var(byteSize{&f.maxTombstoneBytes}, "max-tombstone-bytes", "memory bound of the deleted keys remembered for resumes (see --max-tombstones)")
	fs.IntVar(&f.maxKeyBytes, "max-key-bytes", gd.MaxKeyBytes, "longest key a request may name (may only tighten the rule every gateway applies)")
	fs.IntVar(&f.maxSelectorPrefixes, "max-selector-prefixes", gd.MaxSelectorPrefixes, "most prefixes in one Subscribe or GetSnapshot selector (may only tighten the rule every gateway applies)")
	fs.IntVar(&f.maxValueBytes, "max-value-bytes", gd.MaxValueBytes, "largest value a Put may write (may only tighten the rule every gateway applies; the topic's max.message.bytes bounds it too)")
	fs.IntVar(&f.maxStreamsPrincipal, "max-streams-per-principal", gd.MaxStreamsPerPrincipal, "open streams of one principal (client identity); past it its new streams get RESOURCE_EXHAUSTED")
	fs.IntVar(&f.maxWritesPerSecond, "max-writes-per-second", gd.MaxWritesPerSecond, "writes one principal may make per second (burst ten times it); past it writes get RESOURCE_EXHAUSTED")
	fs.StringVar(&f.gatewayName, "gateway-name", "", "this gateway's name in the audit headers of the writes it makes (default: the host name)")
	f.tls.register(fs)
	f.auth.register(fs)
	fs.DurationVar(&f.shutdownGrace, "shutdown-grace", gd.ShutdownGrace, "bound on a graceful stop on SIGINT/SIGTERM: streams are told to resume elsewhere, then remaining connections are cut")
}

// storeConfig is the part of store.Config the shared flags set.
func (f *serverFlags) storeConfig() (store.Config, error) {
	if f.fetchMaxPartitionBytes > math.MaxInt32 {
		return store.Config{}, errors.New("--fetch-max-partition-bytes must be under 2GiB")
	}
	return store.Config{
		Topic:                  f.topic,
		Partitions:             f.partitions,
		HistoryBatches:         f.historyBatches,
		HistoryBytes:           f.historyBytes,
		TombstoneRetention:     f.tombstoneRetention,
		MaxTombstones:          f.maxTombstones,
		MaxTombstoneBytes:      f.maxTombstoneBytes,
		NoBootstrapDiffs:       f.noBootstrapDiffs,
		MaxBatchRecords:        f.maxBatchRecords,
		FetchMaxWait:           f.fetchMaxWait,
		FetchMaxPartitionBytes: int32(f.fetchMaxPartitionBytes),
		ProbeInterval:          f.probeInterval,
		StaleAfter:             f.staleAfter,
		ProduceTimeout:         f.produceTimeout,
		ProducerLinger:         f.producerLinger,
		TransactionalID:        f.transactionalID,
		TransactionTimeout:     f.transactionTimeout,
		CommitGroupOps:         f.commitGroupOps,
		RecentRequestIDs:       f.recentRequestIDs,
		RecentRequestIDBytes:   f.recentRequestIDBytes,
		SetHoldTimeout:         f.setHoldTimeout,
		SetHoldBytes:           f.setHoldBytes,
	}, nil
}

// gatewayConfig is the part of gateway.Config the shared flags set. It
// reads the TLS and auth files: one missing or invalid is an error. log
// receives the auth files' reload reports and start-up warnings.
func (f *serverFlags) gatewayConfig(log *slog.Logger) (gateway.Config, error) {
	if f.chunkBytes > math.MaxInt32 || f.maxCoalescedBytes > math.MaxInt32 {
		return gateway.Config{}, errors.New("--chunk-bytes and --max-coalesced-bytes must be under 2GiB")
	}
	if err := f.auth.check(f.tls.clientCA != ""); err != nil {
		return gateway.Config{}, err
	}
	tlsCfg, err := f.tls.config()
	if err != nil {
		return gateway.Config{}, err
	}
	authn, policy, err := f.auth.build(f.tls.clientCA != "", log)
	if err != nil {
		return gateway.Config{}, err
	}
	f.auth.optionalClientCerts(tlsCfg)
	if log != nil {
		f.auth.warnings(log, authn, policy, tlsCfg != nil, f.listen)
	}
	return gateway.Config{
		TLS:                   tlsCfg,
		AdminTLS:              f.adminTLS,
		Authenticator:         authn,
		Policy:                policy,
		ChunkBytes:            int(f.chunkBytes),
		CacheBytes:            f.cacheBytes,
		ProgressInterval:      f.progressInterval,
		WaitTimeout:           f.waitTimeout,
		MaxPendingBatches:     f.maxPendingBatches,
		MaxCoalescedBytes:     int(f.maxCoalescedBytes),
		KeepaliveTime:         f.keepaliveTime,
		KeepaliveTimeout:      f.keepaliveTimeout,
		MaxConnectionAge:      f.maxConnectionAge,
		MaxConnectionAgeGrace: f.maxConnectionAgeGrace,
		ShutdownGrace:         f.shutdownGrace,
		MemoBytes:             f.memoBytes,
		ConnReadBufferBytes:   int(f.connReadBuffer),
		MaxSnapshotBuilds:     f.maxSnapshotBuilds,
		MaxStreams:            f.maxStreams,
		MaxStreamsPerConn:     f.maxStreamsPerConn,
		MaxResetsPerSecond:    f.maxResetsPerSecond,
		MaxConnections:        f.maxConnections,

		MaxKeyBytes:            f.maxKeyBytes,
		MaxSelectorPrefixes:    f.maxSelectorPrefixes,
		MaxValueBytes:          f.maxValueBytes,
		MaxStreamsPerPrincipal: f.maxStreamsPrincipal,
		MaxWritesPerSecond:     f.maxWritesPerSecond,
		Name:                   f.gatewayName,
		FleetReportInterval:    f.fleetReportInterval,
	}, nil
}

// fleetConfig is the fleet view's configuration, nil when --fleet is off;
// the node fills in what the store and gateway already say.
func (f *serverFlags) fleetConfig() *fleet.Config {
	if !f.fleet {
		return nil
	}
	// A changed report goes out within a second (--wait-fleet waits on
	// it); unchanged ones are rewritten every report interval.
	return &fleet.Config{Grace: f.fleetGrace, MinInterval: time.Second, Heartbeat: max(time.Second, f.fleetReportInterval)}
}

// node is a running store and gateway (package node), with the
// addresses the CLI reports.
type node struct {
	*cgnode.Node
	log   *slog.Logger
	st    *store.Store
	addrs Addrs
}

// startNode listens (errors name the flags), then starts the node: see
// node.Start for the lifecycle and shutdown order.
func startNode(ctx context.Context, log *slog.Logger, sc store.Config, gc gateway.Config, fc *fleet.Config, listen, adminListen string) (*node, error) {
	lis, err := listenTCP("--listen", listen)
	if err != nil {
		return nil, err
	}
	var adm net.Listener
	if adminListen != "" {
		if adm, err = listenTCP("--admin-listen", adminListen); err != nil {
			lis.Close()
			return nil, err
		}
	}
	n, err := cgnode.Start(ctx, cgnode.Config{Store: sc, Gateway: gc, Fleet: fc, Listener: lis, AdminListener: adm, Logger: log})
	if err != nil {
		lis.Close()
		if adm != nil {
			adm.Close()
		}
		return nil, err
	}
	out := &node{Node: n, log: log, st: n.Store, addrs: Addrs{GRPC: n.GRPCAddr(), Admin: n.AdminAddr(), Kafka: sc.Brokers, Topic: sc.Topic}}
	log.Info("listening", "grpc", out.addrs.GRPC, "admin", out.addrs.Admin, "topic", sc.Topic, "brokers", strings.Join(sc.Brokers, ","))
	return out, nil
}

// waitReady waits until the store has caught up with the topic, the node
// stopped, or ctx ended.
func (n *node) waitReady(ctx context.Context) error { return n.WaitReady(ctx) }

// wait blocks until the node stopped and returns why.
func (n *node) wait() error { return n.Wait() }

func listenTCP(flag, addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		hint := ""
		if errors.Is(err, syscall.EADDRINUSE) {
			hint = fmt.Sprintf(" (something already listens there: another confgate? pick another address with %s, port 0 for any free one)", flag)
		}
		return nil, fmt.Errorf("listen on %s (%s): %w%s", addr, flag, err, hint)
	}
	return lis, nil
}
