package store

import (
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Config configures a Store. Zero values take the documented defaults.
type Config struct {
	// Brokers are Kafka seed brokers, "host:port". Required.
	Brokers []string
	// Topic is the compacted config topic. Required.
	Topic string
	// ClientOpts are extra franz-go options for every client the store
	// makes (TLS, SASL, dialers in tests). They are applied last.
	ClientOpts []kgo.Opt

	// CreateTopic creates the topic, compacted, when it does not exist at
	// start. Without it a missing topic is an error at start. A topic
	// deleted while the store runs is waited for, never recreated.
	CreateTopic bool
	// AllowUncompactedTopic starts on a topic whose cleanup.policy lacks
	// compact. Off by default, since retention there deletes config
	// entries that were not written again in time: the store refuses to
	// start (ErrTopicNotCompacted).
	AllowUncompactedTopic bool
	// Partitions for a created topic. Default 6.
	Partitions int32
	// ReplicationFactor for a created topic. Default -1: the broker's
	// default.replication.factor.
	ReplicationFactor int16
	// TopicConfigs are extra topic configs for a created topic, on top of
	// cleanup.policy=compact (for example segment.ms and
	// min.cleanable.dirty.ratio to make the cleaner run sooner).
	TopicConfigs map[string]string

	// HistoryBatches and HistoryBytes bound the change window that resumes
	// are served from. A longer window makes more resumes cheap deltas
	// instead of snapshots, at the cost of memory. Defaults 65536 batches
	// and 64 MiB.
	HistoryBatches int
	HistoryBytes   int64
	// NoBootstrapDiffs answers every resume from a cursor older than the
	// store's start with a snapshot. By default such a resume gets a diff
	// from the index when the cursor lies among records young enough that
	// the log certainly still held every tombstone after them when they
	// were read (see logTrust: the topic's delete.retention.ms and
	// message.timestamp.after.max.ms decide). Turning it off costs
	// snapshots after every gateway restarted; it exists for tests and as
	// a way out should a broker not honour delete.retention.ms.
	NoBootstrapDiffs bool

	// TombstoneRetention is how long deleted keys are remembered in the
	// index, so a subscriber resuming from older than the history window
	// still learns of deletes without a full snapshot. Mirror the topic's
	// delete.retention.ms. Default 24h.
	TombstoneRetention time.Duration
	// MaxTombstones and MaxTombstoneBytes bound the deleted keys remembered
	// for resumes, in count and in bytes. Past either, the oldest are
	// forgotten before TombstoneRetention ends: a resume from before a
	// forgotten tombstone then gets a snapshot (flagged reset) instead of
	// a diff, never a gap. Defaults 200,000 and 64 MiB.
	MaxTombstones     int
	MaxTombstoneBytes int64
	// MaxBatchRecords caps how many records one history batch holds, which
	// bounds the size of the deltas built from it. Default 512.
	MaxBatchRecords int

	// FetchMaxWait is how long a broker may hold an empty fetch (Kafka
	// fetch.max.wait.ms). It does not delay records: a fetch returns as
	// soon as any arrive. Default 500ms.
	FetchMaxWait time.Duration
	// FetchMaxPartitionBytes is the most a broker returns per partition per
	// fetch (max.partition.fetch.bytes); larger speeds up bootstrap.
	// Default 8 MiB.
	FetchMaxPartitionBytes int32
	// ProbeInterval is how often the store checks topic identity and end
	// offsets (lag). Default 2s.
	ProbeInterval time.Duration
	// StaleAfter: with no successful contact with Kafka for this long the
	// store reports stale and writes fail fast. Default 10s.
	StaleAfter time.Duration
	// ProduceTimeout bounds one write, retries included
	// (delivery.timeout.ms). Default 10s.
	ProduceTimeout time.Duration
	// ProducerLinger is how long a write may wait for others to share its
	// produce request (linger.ms). Writes are single records a caller
	// waits on, so the default is 0: any linger is added latency (franz-go's
	// own default is 10ms). Raise it only for bulk writers.
	ProducerLinger time.Duration

	// TransactionalID is the Kafka transactional.id of the serialization
	// point every gateway of the topic shares for conditional, retry-safe
	// and change-set writes (see Commit). Default "confgate-" + Topic.
	// Gateways of one topic must agree on it; the Kafka principal needs
	// WRITE and DESCRIBE on it.
	TransactionalID string
	// TransactionTimeout is Kafka's transaction.timeout.ms for those
	// writes: a gateway killed mid-transaction holds back every reader of
	// the topic's partitions it wrote (read_committed) until the broker
	// aborts it after this long, or until another gateway writes. Default
	// 10s.
	TransactionTimeout time.Duration
	// CommitGroupOps caps the operations one transaction carries when
	// writes queue up (group commit). Default 2000.
	CommitGroupOps int
	// RecentRequestIDs and RecentRequestIDBytes bound the window of
	// request IDs remembered from applied records (count, bytes): a retry
	// of a write older than the window, whose record compaction removed,
	// is not recognized. Defaults 100,000 and 16 MiB.
	RecentRequestIDs     int
	RecentRequestIDBytes int64
	// SetHoldTimeout and SetHoldBytes bound how long, and how much, the
	// store holds back the records of an incomplete change set before it
	// gives the set up and applies its records as they are (only a foreign
	// producer can write an incomplete set). Defaults 15s and 64 MiB.
	SetHoldTimeout time.Duration
	SetHoldBytes   int64

	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the store's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
}

// Defaults returns the default of every tunable field: what a zero field
// means. The CLI's flags show the same values.
func Defaults() Config {
	return Config{
		Partitions:             6,
		ReplicationFactor:      -1,
		HistoryBatches:         65536,
		HistoryBytes:           64 << 20,
		TombstoneRetention:     24 * time.Hour,
		MaxTombstones:          200000,
		MaxTombstoneBytes:      64 << 20,
		MaxBatchRecords:        512,
		FetchMaxWait:           500 * time.Millisecond,
		FetchMaxPartitionBytes: 8 << 20,
		ProbeInterval:          2 * time.Second,
		StaleAfter:             10 * time.Second,
		ProduceTimeout:         10 * time.Second,
		TransactionTimeout:     10 * time.Second,
		CommitGroupOps:         2000,
		RecentRequestIDs:       100000,
		RecentRequestIDBytes:   16 << 20,
		SetHoldTimeout:         15 * time.Second,
		SetHoldBytes:           64 << 20,
	}
}

// orDefault sets *v to d when *v is zero or negative.
func orDefault[T ~int | ~int16 | ~int32 | ~int64](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

func (c *Config) withDefaults() (Config, error) {
	out := *c
	if len(out.Brokers) == 0 {
		return out, errors.New("store: no Kafka brokers configured")
	}
	if out.Topic == "" {
		return out, errors.New("store: no topic configured")
	}
	d := Defaults()
	orDefault(&out.Partitions, d.Partitions)
	if out.ReplicationFactor == 0 {
		out.ReplicationFactor = d.ReplicationFactor
	}
	orDefault(&out.HistoryBatches, d.HistoryBatches)
	orDefault(&out.HistoryBytes, d.HistoryBytes)
	orDefault(&out.TombstoneRetention, d.TombstoneRetention)
	orDefault(&out.MaxTombstones, d.MaxTombstones)
	orDefault(&out.MaxTombstoneBytes, d.MaxTombstoneBytes)
	orDefault(&out.MaxBatchRecords, d.MaxBatchRecords)
	orDefault(&out.FetchMaxWait, d.FetchMaxWait)
	orDefault(&out.FetchMaxPartitionBytes, d.FetchMaxPartitionBytes)
	orDefault(&out.ProbeInterval, d.ProbeInterval)
	orDefault(&out.StaleAfter, d.StaleAfter)
	orDefault(&out.ProduceTimeout, d.ProduceTimeout)
	orDefault(&out.TransactionTimeout, d.TransactionTimeout)
	orDefault(&out.CommitGroupOps, d.CommitGroupOps)
	orDefault(&out.RecentRequestIDs, d.RecentRequestIDs)
	orDefault(&out.RecentRequestIDBytes, d.RecentRequestIDBytes)
	orDefault(&out.SetHoldTimeout, d.SetHoldTimeout)
	orDefault(&out.SetHoldBytes, d.SetHoldBytes)
	if out.TransactionalID == "" {
		out.TransactionalID = "confgate-" + out.Topic
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out, nil
}
