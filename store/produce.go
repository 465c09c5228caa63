package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

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
	if err == nil {
		err = s.checkTopicLimit(w, headers)
	}
	if err == nil {
		s.mu.RLock()
		_, err = checkWriteSchema(&s.st.schemas.set, w)
		s.mu.RUnlock()
	}
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
	start := time.Now()
	s.prod.Produce(pctx, r, func(_ *kgo.Record, err error) { done <- err })
	select {
	case err = <-done:
	case <-pctx.Done():
		err = pctx.Err()
	}
	s.m.produce.Observe(time.Since(start).Seconds())
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kgo.ErrRecordTimeout) {
			return 0, 0, cursor.Cursor{}, fmt.Errorf("%w: write not acknowledged within %s: %w", ErrUnreachable, s.cfg.ProduceTimeout, err)
		}
		return 0, 0, cursor.Cursor{}, fmt.Errorf("produce %q: %w", w.Key, classifyProduceErr(err))
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

// Why Kafka refused a write, so callers map it without knowing Kafka.
var (
	// ErrTooLargeForTopic: the record is within confgate's limits but
	// over the topic's max.message.bytes.
	ErrTooLargeForTopic = errors.New("record larger than the topic's max.message.bytes")
	// ErrWriteDenied: Kafka's ACLs do not let the gateway write the topic.
	ErrWriteDenied = errors.New("Kafka denied the write (authorization)")
	// ErrWriteRejected: Kafka rejected the write for a reason retrying
	// will not change.
	ErrWriteRejected = errors.New("Kafka rejected the write")
)

// classifyProduceErr wraps a produce error with the store error that says
// what it means for the caller; retriable and unknown errors are left as
// they are (the write may or may not have landed).
func classifyProduceErr(err error) error {
	var ke *kerr.Error
	switch {
	case errors.Is(err, kerr.MessageTooLarge), errors.Is(err, kerr.RecordListTooLarge):
		return fmt.Errorf("%w: %w", ErrTooLargeForTopic, err)
	case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed), errors.Is(err, kerr.TransactionalIDAuthorizationFailed):
		return fmt.Errorf("%w: %w", ErrWriteDenied, err)
	case errors.As(err, &ke) && !ke.Retriable:
		return fmt.Errorf("%w: %w", ErrWriteRejected, err)
	}
	return err
}

// recordOverhead bounds what Kafka's v2 record batch adds around one
// record: the batch header (61 bytes), the record's own fields and the
// varint lengths of its key, value and each header.
func recordOverhead(headers int) int { return 61 + 32 + headers*10 }

// checkTopicLimit refuses, before producing, a write the topic's
// max.message.bytes cannot hold (read when the topic was described), so
// the caller learns the real limit instead of Kafka's MESSAGE_TOO_LARGE.
func (s *Store) checkTopicLimit(w Write, headers []kgo.RecordHeader) error {
	limit := s.maxMessageBytes.Load()
	if limit <= 0 {
		return nil
	}
	n := len(w.Key) + len(w.Value) + recordOverhead(len(headers))
	for _, h := range headers {
		n += len(h.Key) + len(h.Value)
	}
	if int64(n) > limit {
		return &RuleError{Kind: ErrTooLargeForTopic, Field: "value", Msg: fmt.Sprintf(
			"the record would be about %d bytes, more than the topic's max.message.bytes %d: make the value smaller, or raise max.message.bytes on the topic (to at least %d for every entry confgate accepts)",
			n, limit, ProducerBatchBytes)}
	}
	return nil
}
