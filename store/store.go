package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
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

	ends        freshGroup[kadm.ListedOffsets] // CheckInLog's end offset requests
	lastContact atomic.Int64                   // unix nanos of the last successful Kafka round trip
	closeOnce   sync.Once

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
		st:      newState(cursor.TopicID{}, nil, 1, historyLimits{c.HistoryBatches, c.HistoryBytes, c.MaxTombstones, c.MaxTombstoneBytes}, logTrust{}),
	}
	s.m = newMetrics(c.Registerer, s.Stale)
	return s, nil
}

// Close releases the Kafka clients. Run must have returned.
func (s *Store) Close() {
	s.closeOnce.Do(s.prod.Close)
}

// errRebuild ends an epoch and starts a new one.
type errRebuild struct{ reason string }

func (e errRebuild) Error() string { return "rebuild: " + e.reason }

// Run consumes the topic until ctx ends. It returns ErrTopicMissing (wrapped)
// when the topic does not exist at start and CreateTopic is off; Kafka being
// unreachable is not an error: Run retries and the store stays not ready.
func (s *Store) Run(ctx context.Context) error {
	first := true
	for {
		err := s.epoch(ctx, first)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if (errors.Is(err, ErrTopicMissing) || errors.Is(err, ErrTopicNotCompacted)) && first {
			return err
		}
		var rb errRebuild
		if errors.As(err, &rb) {
			if rb.reason == "truncated" {
				// Cursors from before the truncation may name offsets
				// written again since: only snapshots are safe for them.
				s.sawTruncation = true
			}
			s.m.rebuilds.WithLabelValues(rb.reason).Inc()
			s.log.Warn("rebuilding state from the topic", "reason", rb.reason)
			s.fence()
		} else {
			s.log.Warn("consumer stopped, restarting", "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(s.cfg.ProbeInterval):
			}
		}
		first = false
	}
}

// topicMeta is what an epoch knows of its topic incarnation.
type topicMeta struct {
	id         cursor.TopicID
	partitions int32
	timing     topicTiming // for logTrust
}

// epoch serves one incarnation of the topic: bootstrap, then tail until a
// rebuild is needed or ctx ends.
func (s *Store) epoch(ctx context.Context, first bool) error {
	meta, err := s.describe(ctx, first)
	if err != nil {
		return err
	}
	bootStart := time.Now()
	start, err := s.listOffsets(ctx, meta, s.adm.ListStartOffsets)
	if err != nil {
		return err
	}
	// The last stable offset: with read_committed nothing past it can be
	// read, so an open transaction cannot hold readiness hostage beyond
	// its own timeout.
	targets, err := s.listOffsets(ctx, meta, s.adm.ListCommittedOffsets)
	if err != nil {
		return err
	}
	s.install(meta, start, targets, newLogTrust(bootStart, meta.timing, s.cfg.NoBootstrapDiffs || s.sawTruncation))
	s.resetLogSampling()

	offsets := make(map[int32]kgo.Offset, meta.partitions)
	for p := range meta.partitions {
		offsets[p] = kgo.NewOffset().At(start[p])
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(s.cfg.Brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{s.cfg.Topic: offsets}),
		// Aborted transactional writes must never become config.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Markers are delivered so the cursor moves past them: a partition
		// ending in a marker is still caught up.
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(s.cfg.FetchMaxWait),
		kgo.FetchMaxPartitionBytes(s.cfg.FetchMaxPartitionBytes),
		kgo.FetchMaxBytes(max(64<<20, s.cfg.FetchMaxPartitionBytes)),
	}, s.cfg.ClientOpts...)...)
	if err != nil {
		return fmt.Errorf("store: consumer client: %w", err)
	}
	defer cl.Close()

	ectx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.probe(ectx, cancel, meta)
	}()
	defer wg.Wait()

	recs := make([]rec, 0, s.cfg.MaxBatchRecords)
	for {
		fetches := cl.PollFetches(ectx)
		if ectx.Err() != nil {
			return context.Cause(ectx)
		}
		var rebuild error
		fetches.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			s.m.fetchErrs.Inc()
			var dl *kgo.ErrDataLoss
			if errors.As(err, &dl) {
				s.log.Error("topic truncated: offsets went backwards", "partition", p, "err", err)
				rebuild = errRebuild{"truncated"}
				return
			}
			s.logSampled("fetch:"+err.Error(), slog.LevelWarn, "fetch error", "partition", p, "err", err)
		})
		if rebuild != nil {
			return rebuild
		}
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			s.noteHighWatermark(fp.Partition, fp.HighWatermark)
			for _, r := range fp.Records {
				recs = append(recs, s.decode(r, meta.partitions))
				if len(recs) == cap(recs) {
					s.apply(recs)
					recs = recs[:0]
				}
			}
		})
		if len(recs) > 0 {
			s.apply(recs)
			recs = recs[:0]
		}
		s.trustBootstrap(ectx, meta)
		if !fetches.Empty() {
			s.touch()
		}
	}
}

// describe finds the topic, creating it when configured to. It retries
// while Kafka is unreachable.
func (s *Store) describe(ctx context.Context, first bool) (topicMeta, error) {
	for attempt := 0; ; attempt++ {
		meta, err := s.describeOnce(ctx, first)
		if err == nil || errors.Is(err, ErrTopicMissing) || errors.Is(err, ErrTopicNotCompacted) || ctx.Err() != nil {
			return meta, err
		}
		if attempt%10 == 0 {
			s.log.Warn("waiting for Kafka", "err", err)
		}
		select {
		case <-ctx.Done():
			return meta, ctx.Err()
		case <-time.After(min(s.cfg.ProbeInterval, 500*time.Millisecond*time.Duration(attempt+1))):
		}
	}
}

func (s *Store) describeOnce(ctx context.Context, first bool) (topicMeta, error) {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.ProbeInterval*3)
	defer cancel()
	details, err := s.adm.ListTopics(rctx, s.cfg.Topic)
	if err != nil {
		return topicMeta{}, fmt.Errorf("list topic %q: %w", s.cfg.Topic, err)
	}
	td, ok := details[s.cfg.Topic]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		// CreateTopic applies at start only: a topic deleted later was
		// deleted by someone, who may be recreating it with settings of
		// their own; creating it here would race them.
		if !first {
			return topicMeta{}, fmt.Errorf("topic %q is gone, waiting for it to come back", s.cfg.Topic)
		}
		if !s.cfg.CreateTopic {
			return topicMeta{}, fmt.Errorf("%w: %q (create it with cleanup.policy=compact, or start with --create-topic)", ErrTopicMissing, s.cfg.Topic)
		}
		if err := s.createTopic(rctx); err != nil {
			return topicMeta{}, err
		}
		// Metadata lags creation briefly; ask again before giving up.
		for range 50 {
			select {
			case <-rctx.Done():
				return topicMeta{}, rctx.Err()
			case <-time.After(50 * time.Millisecond):
			}
			details, err = s.adm.ListTopics(rctx, s.cfg.Topic)
			if err != nil {
				continue
			}
			if td, ok = details[s.cfg.Topic]; ok && td.Err == nil && len(td.Partitions) > 0 {
				break
			}
		}
	}
	if td.Err != nil {
		return topicMeta{}, fmt.Errorf("describe topic %q: %w", s.cfg.Topic, td.Err)
	}
	meta := topicMeta{id: cursor.TopicID(td.ID), partitions: int32(len(td.Partitions))}
	if meta.partitions == 0 {
		return topicMeta{}, fmt.Errorf("topic %q has no partitions yet", s.cfg.Topic)
	}
	meta.timing = s.inspectConfigs(rctx)
	if p := meta.timing.cleanupPolicy; p != "" && !strings.Contains(p, "compact") && first && !s.cfg.AllowUncompactedTopic {
		return topicMeta{}, fmt.Errorf("%w: %q has cleanup.policy=%s, so Kafka's retention deletes config entries that were never changed or deleted: set cleanup.policy=compact on the topic, or start with --allow-uncompacted-topic if that loss is really intended", ErrTopicNotCompacted, s.cfg.Topic, p)
	}
	s.touch()
	return meta, nil
}

func (s *Store) createTopic(ctx context.Context) error {
	configs := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
	for k, v := range s.cfg.TopicConfigs {
		configs[k] = kadm.StringPtr(v)
	}
	resp, err := s.adm.CreateTopic(ctx, s.cfg.Partitions, s.cfg.ReplicationFactor, configs, s.cfg.Topic)
	if err == nil {
		err = resp.Err
	}
	if errors.Is(err, kerr.TopicAlreadyExists) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create topic %q: %w", s.cfg.Topic, err)
	}
	s.log.Info("created compacted topic", "partitions", s.cfg.Partitions)
	return nil
}

// inspectConfigs warns when the topic is not compacted (it would grow
// forever and a restart would re-read every version ever written), and
// returns what logTrust needs; what is unknown trusts nothing.
func (s *Store) inspectConfigs(ctx context.Context) topicTiming {
	tt := topicTiming{createLag: -1}
	rcs, err := s.adm.DescribeTopicConfigs(ctx, s.cfg.Topic)
	if err != nil {
		return tt
	}
	rc, err := rcs.On(s.cfg.Topic, nil)
	if err != nil || rc.Err != nil {
		return tt
	}
	millis := func(v string) (time.Duration, bool) {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			return 0, false
		}
		return time.Duration(min(ms, int64(math.MaxInt64/time.Millisecond))) * time.Millisecond, true
	}
	for _, c := range rc.Configs {
		if c.Value == nil {
			continue
		}
		switch v := *c.Value; c.Key {
		case "cleanup.policy":
			tt.cleanupPolicy = v
			if strings.Contains(v, "compact") {
				s.m.compacted.Set(1)
				continue
			}
			s.m.compacted.Set(0)
			s.log.Warn("topic is not compacted: retention deletes config entries that were not written again within retention.ms (gateways then serve them as gone after a restart), and restarts re-read every version; set cleanup.policy=compact", "cleanup.policy", v)
		case "delete.retention.ms":
			tt.tombRetention, _ = millis(v)
		case "message.timestamp.after.max.ms":
			if d, ok := millis(v); ok {
				tt.createLag = d
			}
		case "message.timestamp.type":
			tt.logAppendTime = v == "LogAppendTime"
		case "unclean.leader.election.enable":
			tt.uncleanElection = v == "true"
		}
	}
	return tt
}

// trustBootstrap runs when the store has caught up and its state waits to
// trust what it read (logTrust): it lists the log start offsets, and the
// store becomes ready with them. Readiness waits for this one request so
// that the first resumes after a restart already get diffs. On failure
// nothing is trusted: resumes from before the start get snapshots.
func (s *Store) trustBootstrap(ctx context.Context, meta topicMeta) {
	s.mu.RLock()
	st := s.st
	pending := st.trustPending(s.targets)
	s.mu.RUnlock()
	if !pending {
		return
	}
	start, err := s.listOffsets(ctx, meta, s.adm.ListStartOffsets)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st != st {
		return
	}
	if err != nil {
		s.log.Warn("not trusting the log's tombstones: start offsets unknown", "err", err)
		st.trust = logTrust{}
	} else {
		st.trustStart = start
	}
	s.checkReadyLocked()
	s.notifyLocked()
	if s.ready {
		s.log.Info("resumes from cursors at or after this are answered with diffs", "cursor", cursor.Cursor{Topic: st.topic, Offsets: st.diffFloor}.String())
	}
}

func (s *Store) listOffsets(ctx context.Context, meta topicMeta, list func(context.Context, ...string) (kadm.ListedOffsets, error)) ([]int64, error) {
	rctx, cancel := context.WithTimeout(ctx, s.cfg.ProbeInterval*3)
	defer cancel()
	lo, err := list(rctx, s.cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("list offsets of %q: %w", s.cfg.Topic, err)
	}
	out := make([]int64, meta.partitions)
	for p := range meta.partitions {
		o, ok := lo.Lookup(s.cfg.Topic, p)
		if !ok {
			return nil, fmt.Errorf("list offsets of %q: partition %d missing", s.cfg.Topic, p)
		}
		if o.Err != nil {
			return nil, fmt.Errorf("list offsets of %q partition %d: %w", s.cfg.Topic, p, o.Err)
		}
		out[p] = max(o.Offset, 0)
	}
	return out, nil
}

// install starts a new incarnation: empty state at the log start offsets,
// not ready until targets are reached.
func (s *Store) install(meta topicMeta, start, targets []int64, trust logTrust) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.topic != (cursor.TopicID{}) && s.st.topic != meta.id {
		// franz-go's producer, like its consumer, never adopts a
		// recreated topic's new ID by itself: writes would fail with
		// UNKNOWN_TOPIC_ID forever. Purging makes it look the topic up
		// again.
		s.prod.PurgeTopicsFromClient(s.cfg.Topic)
		s.log.Info("topic has a new identity: producer re-reads its metadata", "topic_id", meta.id.String())
	}
	// Skip one seq so a reader positioned at the old head sees
	// ErrRebuilt rather than an empty, seemingly current history.
	seq := s.st.nextSeq + 1
	caughtUp := true
	for p, t := range targets {
		caughtUp = caughtUp && start[p] >= t
	}
	if caughtUp {
		trust = logTrust{} // nothing to read, nothing to trust
	}
	s.st = newState(meta.id, start, seq, historyLimits{s.cfg.HistoryBatches, s.cfg.HistoryBytes, s.cfg.MaxTombstones, s.cfg.MaxTombstoneBytes}, trust)
	s.targets = targets
	s.hw = slices.Clone(targets)
	s.produced = nil
	s.ready = false
	s.m.ready.Set(0)
	s.m.lag.Reset()
	s.log.Info("consuming topic", "topic_id", meta.id.String(), "partitions", meta.partitions, "target", cursor.Cursor{Topic: meta.id, Offsets: targets}.Sum())
	s.checkReadyLocked()
	s.notifyLocked()
}

// fence stops serving the current incarnation until the next is caught up.
func (s *Store) fence() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ready = false
	s.m.ready.Set(0)
	s.notifyLocked()
}

func (s *Store) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *Store) checkReadyLocked() {
	if s.ready {
		return
	}
	for p, t := range s.targets {
		if s.st.next[p] < t {
			return
		}
	}
	if s.st.trustPending(s.targets) {
		return // trustBootstrap lists the start offsets first
	}
	s.ready = true
	s.st.startRecording(time.Now())
	s.m.ready.Set(1)
	s.log.Info("caught up: ready", "cursor", s.st.cursor().String(), "entries", s.st.live)
}

func (s *Store) apply(recs []rec) {
	now := time.Now().UnixNano()
	s.mu.Lock()
	b, res := s.st.apply(recs, now)
	// Counted before readers are woken, so one that waited for these
	// records sees them counted.
	s.m.applied.Add(float64(res.applied))
	for why, n := range res.skipped {
		s.m.skipped.WithLabelValues(string(why)).Add(float64(n))
	}
	purged := s.st.purgeTombstones(now - s.cfg.TombstoneRetention.Nanoseconds())
	wasReady := s.ready
	s.checkReadyLocked()
	// Becoming ready is a change too: the last records before it may all
	// have been skipped (a transaction marker at a partition's tail).
	if b != nil || purged > 0 || res.applied > 0 || s.ready != wasReady {
		s.notifyLocked()
	}
	s.updateGaugesLocked()
	s.mu.Unlock()
}

func (s *Store) updateGaugesLocked() {
	s.m.entries.Set(float64(s.st.live))
	s.m.tombstones.Set(float64(s.st.tombs))
	s.m.tombBytes.Set(float64(s.st.tombBytes))
	s.m.history.Set(float64(len(s.st.history)))
	for p := range s.st.next {
		if p < len(s.hw) {
			s.m.lag.WithLabelValues(strconv.Itoa(p)).Set(float64(max(0, s.hw[p]-s.st.next[p])))
		}
	}
}

func (s *Store) noteHighWatermark(p int32, hw int64) {
	s.mu.Lock()
	if int(p) < len(s.hw) && hw > s.hw[p] {
		s.hw[p] = hw
	}
	s.mu.Unlock()
}

func (s *Store) touch() { s.lastContact.Store(time.Now().UnixNano()) }

// probe watches topic identity and end offsets until ctx ends. A changed
// topic ID (deleted and recreated; franz-go never adopts a new ID by itself)
// or partition count ends the epoch with a rebuild.
func (s *Store) probe(ctx context.Context, cancel context.CancelCauseFunc, meta topicMeta) {
	t := time.NewTicker(s.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.probeOnce(ctx, cancel, meta)
	}
}

func (s *Store) probeOnce(ctx context.Context, cancel context.CancelCauseFunc, meta topicMeta) {
	rctx, rcancel := context.WithTimeout(ctx, s.cfg.ProbeInterval*2)
	defer rcancel()
	details, err := s.adm.ListTopics(rctx, s.cfg.Topic)
	if err != nil {
		return
	}
	td, ok := details[s.cfg.Topic]
	switch {
	case !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition):
		s.touch()
		cancel(errRebuild{"topic_deleted"})
		return
	case td.Err != nil:
		return
	case cursor.TopicID(td.ID) != meta.id:
		s.touch()
		cancel(errRebuild{"topic_recreated"})
		return
	case int32(len(td.Partitions)) != meta.partitions:
		s.touch()
		cancel(errRebuild{"partitions_changed"})
		return
	}
	ends, err := s.adm.ListEndOffsets(rctx, s.cfg.Topic)
	if err != nil {
		return
	}
	s.touch()
	s.mu.Lock()
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && int(o.Partition) < len(s.hw) && o.Offset > s.hw[o.Partition] {
			s.hw[o.Partition] = o.Offset
		}
	})
	s.updateGaugesLocked()
	s.mu.Unlock()
}

// Stale reports whether Kafka has not been reached for StaleAfter.
func (s *Store) Stale() bool {
	last := s.lastContact.Load()
	return last == 0 || time.Since(time.Unix(0, last)) > s.cfg.StaleAfter
}

// Ready reports whether the store has caught up and may serve.
func (s *Store) Ready() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ready
}

// Changed returns a channel closed at the next change: a batch applied,
// readiness gained or lost, or a rebuild.
func (s *Store) Changed() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.changed
}

// WaitReady blocks until the store is ready or ctx ends.
func (s *Store) WaitReady(ctx context.Context) error {
	for {
		s.mu.RLock()
		ready, ch := s.ready, s.changed
		s.mu.RUnlock()
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
		case <-ch:
		}
	}
}

// Status is a point-in-time summary for health checks and progress.
type Status struct {
	Ready      bool
	Stale      bool
	Topic      cursor.TopicID
	Cursor     cursor.Cursor
	LagRecords int64
	Entries    int
	Tombstones int
	Digest     []byte
	// HistoryFloor is the oldest cursor a resume is answered from the
	// change window; older resumes use the index or a snapshot.
	HistoryFloor cursor.Cursor
	HistoryBatch int
}

// Status returns the store's current status.
func (s *Store) Status() Status {
	stale := s.Stale()
	s.mu.RLock()
	defer s.mu.RUnlock()
	var lag int64
	for p := range s.st.next {
		if p < len(s.hw) {
			lag += max(0, s.hw[p]-s.st.next[p])
		}
	}
	return Status{
		Ready:        s.ready,
		Stale:        stale,
		Topic:        s.st.topic,
		Cursor:       s.st.cursor(),
		LagRecords:   lag,
		Entries:      s.st.live,
		Tombstones:   s.st.tombs,
		Digest:       s.st.dig.Bytes(),
		HistoryFloor: s.st.floor.Clone(),
		HistoryBatch: len(s.st.history),
	}
}

// Snapshot returns a consistent view of the whole state. ErrNotReady
// before the store has caught up.
func (s *Store) Snapshot() (*Snapshot, error) {
	s.mu.RLock()
	if !s.ready {
		s.mu.RUnlock()
		return nil, ErrNotReady
	}
	if snap := s.st.snap; snap != nil {
		s.mu.RUnlock()
		return snap, nil
	}
	s.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ready {
		return nil, ErrNotReady
	}
	return s.st.snapshot(), nil
}

// Get returns the live entry for key and the cursor it was read at,
// without cloning the index. ErrNotReady before the store caught up.
func (s *Store) Get(key string) (*Entry, cursor.Cursor, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.ready {
		return nil, cursor.Cursor{}, false, ErrNotReady
	}
	e, ok := s.st.tree.Get(&Entry{Key: key})
	if !ok || e.Deleted {
		return nil, s.st.cursor(), false, nil
	}
	return e, s.st.cursor(), true, nil
}

// Since returns up to max batches after seq. ErrHistoryGone or ErrRebuilt
// mean the reader must re-snapshot; no batches and no error mean nothing
// new yet (wait on Changed).
func (s *Store) Since(seq uint64, max int) ([]*Batch, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.ready {
		if seq+1 < s.st.epochStart {
			return nil, ErrRebuilt
		}
		return nil, nil
	}
	return s.st.since(seq, max)
}

// Resume says how a reader at cursor c continues.
type Resume struct {
	Kind ResumeKind
	// Seq: continue with the batches after it.
	Seq uint64
	// Snap, for ResumeDiff: the view to diff against c, taken at Seq.
	Snap *Snapshot
}

// ResumeFrom finds where a reader at c continues: ErrTopicChanged,
// ErrBehind (wait and retry), ErrHistoryGone (snapshot), ErrRebuilt (c was
// made before partitions were added: snapshot) or a Resume.
func (s *Store) ResumeFrom(c cursor.Cursor) (Resume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ready {
		return Resume{}, ErrNotReady
	}
	kind, seq, err := s.st.resume(c)
	if err != nil {
		return Resume{}, err
	}
	r := Resume{Kind: kind, Seq: seq}
	if kind == ResumeDiff {
		r.Snap = s.st.snapshot()
	}
	return r, nil
}

// CheckInLog asks Kafka for the topic's end offsets (high watermarks) and
// returns ErrBeyondLog, naming the partition, when c is past one. Every
// position a reader was ever given lies at or before the end offset of
// its time, and end offsets only grow; so c is past the end only when the
// log was truncated after c was read (an unclean leader election, a
// restore) or c was not made by a reader. Waiting for such a c is
// pointless: the offsets it names either never come, or come with other
// records. A cursor of another topic incarnation is not checked.
// Concurrent calls share requests that start after they were made.
func (s *Store) CheckInLog(ctx context.Context, c cursor.Cursor) error {
	s.mu.RLock()
	topic := s.st.topic
	s.mu.RUnlock()
	if c.Topic != topic {
		return nil
	}
	if s.Stale() {
		// Not worth a request that would only time out.
		return fmt.Errorf("%w: no answer from Kafka for over %s", ErrUnreachable, s.cfg.StaleAfter)
	}
	// The end offsets must be read after c was made: a request already
	// running may predate c and see a shorter log.
	ends, err := s.ends.do(ctx, func() (kadm.ListedOffsets, error) {
		rctx, cancel := context.WithTimeout(context.Background(), s.cfg.ProbeInterval*3)
		defer cancel()
		return s.adm.ListEndOffsets(rctx, s.cfg.Topic)
	})
	if err != nil {
		return fmt.Errorf("list end offsets of %q: %w", s.cfg.Topic, err)
	}
	for p, off := range c.Offsets {
		if off == 0 {
			continue
		}
		o, ok := ends.Lookup(s.cfg.Topic, int32(p))
		switch {
		case !ok:
			return fmt.Errorf("%w: partition %d does not exist (the cursor is at offset %d)", ErrBeyondLog, p, off)
		case o.Err != nil:
			return fmt.Errorf("list end offset of %q partition %d: %w", s.cfg.Topic, p, o.Err)
		case off > o.Offset:
			return fmt.Errorf("%w: partition %d ends at offset %d, the cursor is at %d", ErrBeyondLog, p, o.Offset, off)
		}
	}
	return nil
}

// WaitApplied blocks until the store has applied c (read-your-writes), or
// ctx ends (ErrBehind). ErrTopicChanged when c is of another topic.
func (s *Store) WaitApplied(ctx context.Context, c cursor.Cursor) error {
	for {
		s.mu.RLock()
		ready, st, ch := s.ready, s.st, s.changed
		var covered bool
		sameTopic := st.topic == c.Topic
		if ready && sameTopic {
			covered = cursor.Cursor{Topic: st.topic, Offsets: st.next}.Covers(c)
		}
		s.mu.RUnlock()
		if ready && !sameTopic {
			return ErrTopicChanged
		}
		if covered {
			return nil
		}
		select {
		case <-ctx.Done():
			if !ready {
				return fmt.Errorf("%w: %w", ErrNotReady, ctx.Err())
			}
			return fmt.Errorf("%w: %w", ErrBehind, ctx.Err())
		case <-ch:
		}
	}
}

// Write is one entry to produce; a nil Value with Delete set is a tombstone.
type Write struct {
	Key         string
	Value       []byte
	Delete      bool
	ContentType string
	Headers     []Header
}

// Produce writes w and returns its version and a cursor that includes it,
// once Kafka acknowledged it with acks=all.
func (s *Store) Produce(ctx context.Context, w Write) (partition int32, offset int64, c cursor.Cursor, err error) {
	// A record the store would skip on read must not be acknowledged.
	headers, err := checkWrite(w)
	if err != nil {
		return 0, 0, cursor.Cursor{}, fmt.Errorf("produce: %w", err)
	}
	if s.Stale() {
		return 0, 0, cursor.Cursor{}, fmt.Errorf("%w: no answer from Kafka for over %s", ErrUnreachable, s.cfg.StaleAfter)
	}
	r := &kgo.Record{Key: []byte(w.Key), Headers: headers}
	if !w.Delete {
		r.Value = w.Value
		if r.Value == nil {
			r.Value = []byte{} // an empty value is a value, not a delete
		}
	}
	pctx, cancel := context.WithTimeout(ctx, s.cfg.ProduceTimeout)
	defer cancel()
	// franz-go does not give up on a record already in flight when its
	// context ends (a broker killed mid-request), so wait on the promise or
	// the deadline, whichever comes first. A write that times out here may
	// still land: the caller is told UNAVAILABLE, never a false success.
	done := make(chan error, 1)
	s.prod.Produce(pctx, r, func(_ *kgo.Record, err error) { done <- err })
	select {
	case err = <-done:
	case <-pctx.Done():
		err = pctx.Err()
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kgo.ErrRecordTimeout) {
			return 0, 0, cursor.Cursor{}, fmt.Errorf("%w: write not acknowledged within %s: %w", ErrUnreachable, s.cfg.ProduceTimeout, err)
		}
		return 0, 0, cursor.Cursor{}, fmt.Errorf("produce %q: %w", w.Key, err)
	}
	s.touch()
	s.mu.Lock()
	for int(r.Partition) >= len(s.produced) {
		s.produced = append(s.produced, 0)
	}
	s.produced[r.Partition] = max(s.produced[r.Partition], r.Offset+1)
	c = cursor.Max(cursor.Cursor{Topic: s.st.topic, Offsets: s.st.next}, cursor.Cursor{Topic: s.st.topic, Offsets: s.produced})
	s.mu.Unlock()
	return r.Partition, r.Offset, c, nil
}
