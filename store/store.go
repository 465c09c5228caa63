package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/semaphore"
)

// Errors for callers that map them to their own protocol.
var (
	// ErrNotReady: the store has not caught up since start or rebuild.
	ErrNotReady = errors.New("store: not caught up with the topic yet")
	// ErrUnreachable: Kafka has not answered recently; writes fail fast.
	ErrUnreachable = errors.New("store: Kafka unreachable")
	// ErrTopicMissing: the topic does not exist and CreateTopic is off.
	ErrTopicMissing = errors.New("store: topic does not exist")
	// ErrTopicNotCompacted: the topic's cleanup.policy lacks compact and
	// AllowUncompactedTopic is off.
	ErrTopicNotCompacted = errors.New("store: topic is not compacted")
)

// ContentTypeHeader is the record header that carries an entry's content
// type.
const ContentTypeHeader = "content-type"

// Store consumes the config topic into the authoritative state.
//
// Lock order: mu guards st, ready, targets, changed and hw. Never call
// Kafka or a reader callback while holding it.
type Store struct {
	cfg     Config
	log     *slog.Logger
	m       *metrics
	prod    *kgo.Client
	adm     *kadm.Client
	keyPart kgo.TopicPartitioner // default partitioner, for ownership checks
	partRec kgo.Record           // scratch for keyPart; owned by the consume loop

	mu      sync.RWMutex
	st      *state
	ready   bool
	targets []int64       // end offsets to reach before ready
	changed chan struct{} // closed and replaced on every change
	hw      []int64       // latest known high watermark per partition
	// produced is the next offset after the newest record this store
	// wrote, per partition, so a write's cursor also covers the same
	// writer's earlier writes that are not applied yet.
	produced []int64

	sawTruncation bool // the log went backwards once: Run's goroutine only
	// maxMessageBytes is the topic's max.message.bytes as last described
	// (0 unknown): writes that cannot fit are refused before producing.
	maxMessageBytes atomic.Int64

	ends        freshGroup[kadm.ListedOffsets] // CheckInLog's end offset requests
	lastContact atomic.Int64                   // unix nanos of the last successful Kafka round trip
	closeOnce   sync.Once

	seq *sequencer // the serialization point's writer (Commit)

	// logged counts log lines per kind in this epoch, so a flood (a
	// recreated topic makes every fetch fail; a bad producer writes
	// millions of bad records) logs a sample, while metrics count all.
	loggedMu sync.Mutex
	logged   map[string]int
}

// logSampled logs the 1st, 10th, 100th... occurrence of kind per epoch.
func (s *Store) logSampled(kind string, level slog.Level, msg string, args ...any) {
	s.loggedMu.Lock()
	if s.logged == nil {
		s.logged = map[string]int{}
	}
	s.logged[kind]++
	n := s.logged[kind]
	s.loggedMu.Unlock()
	for p := 1; p <= n; p *= 10 {
		if p == n {
			s.log.Log(context.Background(), level, msg, append(args, "occurrence", n)...)
			return
		}
	}
}

func (s *Store) resetLogSampling() {
	s.loggedMu.Lock()
	s.logged = nil
	s.loggedMu.Unlock()
}

// New validates cfg and builds the clients; it does not contact Kafka.
func New(cfg Config) (*Store, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	prod, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.DefaultProduceTopic(c.Topic),
		// Kafka's default partitioner (murmur2 of the key), so confgate's
		// writes and any other producer's agree on a key's partition.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(ProducerBatchBytes),
		// Writes are single records waiting on an answer: do not linger.
		kgo.ProducerLinger(c.ProducerLinger),
		kgo.RecordDeliveryTimeout(c.ProduceTimeout),
		kgo.ProduceRequestTimeout(c.ProduceTimeout),
		// The admin client shares this client; kgo answers metadata
		// requests from a cache younger than MetadataMinAge (default 5s),
		// which would hide a recreated topic from the probe for that long.
		kgo.MetadataMinAge(min(c.ProbeInterval/4, 250*time.Millisecond)),
	}, c.ClientOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("store: producer client: %w", err)
	}
	s := &Store{
		cfg:     c,
		log:     c.Logger.With("component", "store", "topic", c.Topic),
		prod:    prod,
		adm:     kadm.NewClient(prod),
		keyPart: kgo.StickyKeyPartitioner(nil).ForTopic(c.Topic),
		changed: make(chan struct{}),
		st:      newState(cursor.TopicID{}, nil, 1, historyLimits{c.HistoryBatches, c.HistoryBytes, c.MaxTombstones, c.MaxTombstoneBytes, c.RecentRequestIDs, c.RecentRequestIDBytes}, logTrust{}),
	}
	s.m = newMetrics(c.Registerer, s.Stale)
	s.seq = &sequencer{s: s, queue: make(chan *pending, 4096), room: semaphore.NewWeighted(commitQueueBytes)}
	return s, nil
}

// commitQueueBytes bounds the records of Commits queued or in flight on
// one store: 32 MiB, sixteen of the largest change sets.
const commitQueueBytes = 32 << 20

// Close releases the Kafka clients. Run must have returned.
func (s *Store) Close() {
	s.closeOnce.Do(s.prod.Close)
}
