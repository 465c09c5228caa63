package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

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
	s.maxMessageBytes.Store(meta.timing.maxMessageBytes)
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
		case "max.message.bytes":
			if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
				tt.maxMessageBytes = n
			}
		case "message.timestamp.type":
			tt.logAppendTime = v == "LogAppendTime"
		case "unclean.leader.election.enable":
			tt.uncleanElection = v == "true"
		}
	}
	return tt
}
