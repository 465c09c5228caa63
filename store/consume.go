package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// errRebuild ends an epoch and starts a new one.
type errRebuild struct{ reason string }

func (e errRebuild) Error() string { return "rebuild: " + e.reason }

// Run consumes the topic until ctx ends. It returns ErrTopicMissing (wrapped)
// when the topic does not exist at start and CreateTopic is off; Kafka being
// unreachable is not an error: Run retries and the store stays not ready.
func (s *Store) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.seq.run(sctx)
	}()
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
	asm := newAssembler(meta.partitions, s.cfg.SetHoldTimeout, s.cfg.SetHoldBytes)
	for {
		// While a change set is held, wake up without new records too, so
		// a set that never completes is given up in time.
		pctx, cancelPoll := ectx, context.CancelFunc(func() {})
		if asm.held > 0 {
			pctx, cancelPoll = context.WithTimeout(ectx, min(s.cfg.SetHoldTimeout/4, time.Second))
		}
		fetches := cl.PollFetches(pctx)
		cancelPoll()
		if ectx.Err() != nil {
			return context.Cause(ectx)
		}
		var rebuild error
		fetches.EachError(func(t string, p int32, err error) {
			if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) && pctx != ectx {
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
		now := time.Now()
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if fp.Partition < 0 {
				return // the error-only fetch of a poll that timed out
			}
			s.noteHighWatermark(fp.Partition, fp.HighWatermark)
			for _, r := range fp.Records {
				recs = asm.add(s.decode(r, meta.partitions), now, recs)
			}
		})
		recs = asm.release(now, recs)
		if asm.broken > 0 {
			s.m.brokenSets.Add(float64(asm.broken))
			s.logSampled("broken_set", slog.LevelWarn, "gave up waiting for the rest of a change set: its records are applied as they are (a producer other than a gateway wrote a change-set header)", "sets", asm.broken)
			asm.broken = 0
		}
		s.applyRun(recs)
		recs = recs[:0]
		s.trustBootstrap(ectx, meta)
		if !fetches.Empty() {
			s.touch()
		}
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
	s.st = newState(meta.id, start, seq, historyLimits{s.cfg.HistoryBatches, s.cfg.HistoryBytes, s.cfg.MaxTombstones, s.cfg.MaxTombstoneBytes, s.cfg.RecentRequestIDs, s.cfg.RecentRequestIDBytes}, trust)
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

// applyRun applies released records in batches of at most
// MaxBatchRecords, cut only where no change set is open, so each set is
// applied (and later sent) in one batch.
func (s *Store) applyRun(recs []rec) {
	open := openSets{}
	start := 0
	for i := range recs {
		if open.note(&recs[i]) && i+1-start >= s.cfg.MaxBatchRecords {
			s.apply(recs[start : i+1])
			start = i + 1
		}
	}
	if start < len(recs) {
		s.apply(recs[start:])
	}
	clear(recs)
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
	for _, se := range res.schemaBad {
		s.m.schemaBad.Inc()
		msg, args := "applied a value that breaks its schema (written by a producer other than the gateways; the log is the truth, so it is served, and flagged on /debug/state)", []any{"err", se.Error()}
		if len(s.st.schemas.flagged) < maxFlagged {
			s.log.Warn(msg, args...)
		} else {
			s.logSampled("schema_violation", slog.LevelWarn, msg, args...)
		}
	}
	for _, e := range res.condViolated {
		s.m.condViolated.Inc()
		s.logSampled("precondition_violated", slog.LevelError, "a record's precondition did not hold where it landed in the log: a producer other than the gateways' serialization point wrote the key in between (the record is applied: the log is the truth)", "key", strconv.Quote(e.Key), "partition", e.Partition, "offset", e.Offset)
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
