package store

import (
	"context"
	"errors"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

func (s *Store) noteHighWatermark(p int32, hw int64) {
	s.mu.Lock()
	if p >= 0 && int(p) < len(s.hw) && hw > s.hw[p] {
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
