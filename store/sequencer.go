package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/semaphore"
)

// The serialization point (docs/guarantees.md proves it): every gateway
// of a topic writes conditional, retry-safe and change-set writes through
// a Kafka transactional producer with the same transactional.id. Before
// it checks anything, a gateway initializes that producer, which fences
// every other holder: their open transaction is aborted and their later
// produce or commit fails. It then reads the log up to the last stable
// offset, checks preconditions and request IDs against its state, and
// commits. The commit succeeds only if no other gateway initialized the
// producer since, so nothing was committed between the check and the
// write. While it keeps the producer, its own commits are all that was
// committed: it waits until it has applied them before the next check.

// pending is one Commit waiting for the sequencer.
type pending struct {
	ctx  context.Context
	c    Commit
	recs []*kgo.Record
	keys uint64
	done chan answer
	// result is the answer, set before it is sent (read by followers).
	result answer
	// finished is closed once p is answered.
	finished chan struct{}
}

type answer struct {
	res CommitResult
	err error
}

func (p *pending) answer(res CommitResult, err error) {
	select {
	case <-p.finished:
		return // already answered
	default:
	}
	p.result = answer{res, err}
	p.done <- p.result
	close(p.finished)
}

// follower is a Commit with the same request ID as one written in the
// same transaction: it gets that one's result as a duplicate.
type follower struct {
	p, of *pending
}

// sequencer serializes this store's Commits and groups those that queue
// up into one transaction (group commit).
type sequencer struct {
	s     *Store
	queue chan *pending
	// room bounds the bytes of queued and in-flight writes.
	room *semaphore.Weighted

	// Owned by run.
	cl  *kgo.Client // the transactional producer; nil until (re)initialized
	own []int64     // next offsets after what must be applied before a check
}

// maxAttempts bounds the transactions one Commit takes part in: a
// fenced or failed transaction is retried after initializing again.
const maxAttempts = 3

func (q *sequencer) run(ctx context.Context) {
	defer q.reset()
	for {
		var first *pending
		select {
		case <-ctx.Done():
			for {
				select {
				case p := <-q.queue:
					p.answer(CommitResult{}, fmt.Errorf("%w: the gateway is shutting down", ErrNotReady))
				default:
					return
				}
			}
		case first = <-q.queue:
		}
		batch, n := []*pending{first}, len(first.c.Ops)
	group:
		for n < q.s.cfg.CommitGroupOps {
			select {
			case p := <-q.queue:
				batch = append(batch, p)
				n += len(p.c.Ops)
			default:
				break group
			}
		}
		q.process(ctx, batch)
	}
}

func (q *sequencer) reset() {
	if q.cl != nil {
		q.cl.Close()
		q.cl = nil
	}
}

func (q *sequencer) process(ctx context.Context, batch []*pending) {
	start := time.Now()
	defer func() { q.s.m.commitSeconds.Observe(time.Since(start).Seconds()) }()
	for attempt := 1; ; attempt++ {
		live := batch[:0]
		for _, p := range batch {
			if p.ctx.Err() == nil {
				live = append(live, p)
			} else {
				// The caller gave up before anything was written for it.
				p.answer(CommitResult{}, p.ctx.Err())
			}
		}
		batch = live
		if len(batch) == 0 {
			return
		}
		if err := q.ensure(ctx); err != nil {
			q.reset()
			for _, p := range batch {
				q.fail(p, err)
			}
			return
		}
		write, follow := q.check(batch)
		if len(write) == 0 {
			return
		}
		left, err := q.write(ctx, write)
		// Followers of answered writes get their answer; the others are
		// retried with what was not confirmed.
		var again []*pending
		for _, f := range follow {
			select {
			case <-f.of.finished:
				res := f.of.result
				if res.err == nil {
					res.res.Duplicate = true
				}
				q.count(res.res, res.err)
				f.p.answer(res.res, res.err)
			default:
				again = append(again, f.p)
			}
		}
		if err == nil {
			return
		}
		// Fenced, the outcome unknown, or a commit Kafka acknowledged whose
		// records were not read back. A new producer fences this one's
		// transaction: it aborts it, or completes its commit. The request
		// IDs make the retry safe: a commit that landed is found by the
		// check and answered as a duplicate.
		q.reset()
		if attempt >= maxAttempts || ctx.Err() != nil {
			for _, p := range append(left, again...) {
				q.fail(p, fmt.Errorf("%w: transaction not confirmed after %d attempts (the write may have landed: retry with the same request ID): %w", ErrUnreachable, attempt, err))
			}
			return
		}
		batch = append(left, again...)
		q.s.log.Info("serialization point: transaction failed, initializing again", "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(rand.IntN(20*attempt)+5) * time.Millisecond):
		}
	}
}

func (q *sequencer) fail(p *pending, err error) {
	q.count(CommitResult{}, err)
	p.answer(CommitResult{}, err)
}

// count records a Commit's result in the metrics.
func (q *sequencer) count(res CommitResult, err error) {
	result := "ok"
	var pe *PreconditionError
	var re *RuleError
	var se *SchemaError
	switch {
	case err == nil && res.Duplicate:
		result = "duplicate"
	case err == nil:
	case errors.As(err, &pe):
		result = "precondition_failed"
	case errors.As(err, &re), errors.As(err, &se), errors.Is(err, ErrRequestIDReused):
		result = "invalid"
	default:
		result = "unavailable"
	}
	q.s.m.commits.WithLabelValues(result).Inc()
}

// ensure holds the transactional producer and has applied everything
// committed through it before: after initializing, the log up to the last
// stable offset; after its own commits, those.
func (q *sequencer) ensure(ctx context.Context) error {
	tctx, cancel := context.WithTimeout(ctx, q.s.cfg.ProduceTimeout)
	defer cancel()
	if q.cl == nil {
		if !q.s.Ready() {
			return ErrNotReady
		}
		cl, err := kgo.NewClient(append([]kgo.Opt{
			kgo.SeedBrokers(q.s.cfg.Brokers...),
			kgo.DefaultProduceTopic(q.s.cfg.Topic),
			kgo.TransactionalID(q.s.cfg.TransactionalID),
			kgo.TransactionTimeout(q.s.cfg.TransactionTimeout),
			kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
			kgo.ProducerBatchMaxBytes(ProducerBatchBytes),
			kgo.ProducerLinger(0),
			kgo.RecordDeliveryTimeout(q.s.cfg.ProduceTimeout),
			kgo.ProduceRequestTimeout(q.s.cfg.ProduceTimeout),
		}, q.s.cfg.ClientOpts...)...)
		if err != nil {
			return fmt.Errorf("transactional producer: %w", err)
		}
		if _, _, err := cl.ProducerID(tctx); err != nil {
			cl.Close()
			return fmt.Errorf("%w: initialize the transactional producer %q: %w", ErrUnreachable, q.s.cfg.TransactionalID, classifyProduceErr(err))
		}
		q.s.m.fences.Inc()
		ends, err := q.s.committedEnds(tctx)
		if err != nil {
			cl.Close()
			return fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		q.cl, q.own = cl, ends
	}
	if err := q.s.waitOffsets(tctx, q.own); err != nil {
		return fmt.Errorf("%w: the gateway has not applied the log up to the serialization point in %s: %w", ErrUnreachable, q.s.cfg.ProduceTimeout, err)
	}
	return nil
}

// check answers the Commits that need no write (duplicates, failed
// preconditions, invalid, validate-only) and returns those to write, and
// those that repeat a request ID written in this transaction.
func (q *sequencer) check(batch []*pending) (write []*pending, follow []follower) {
	s := q.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.ready {
		for _, p := range batch {
			q.fail(p, ErrNotReady)
		}
		return nil, nil
	}
	st := s.st
	cur := cursor.Max(st.cursor(), cursor.Cursor{Topic: st.topic, Offsets: s.produced})
	overlay := map[string]*Entry{}
	ids := map[string]*pending{}
	schemas := newSchemaOverlay(st.schemas)
	for _, p := range batch {
		if r, ok := st.ids.get(p.c.RequestID); ok {
			if r.keys != p.keys {
				q.fail(p, fmt.Errorf("%w: request ID %q landed with other keys; give every distinct write its own ID", ErrRequestIDReused, p.c.RequestID))
				continue
			}
			res := CommitResult{Versions: append([]Version(nil), r.versions...), Cursor: cur, Duplicate: true}
			q.count(res, nil)
			p.answer(res, nil)
			continue
		}
		if first, ok := ids[p.c.RequestID]; ok {
			if first.keys != p.keys {
				q.fail(p, fmt.Errorf("%w: request ID %q is being written with other keys", ErrRequestIDReused, p.c.RequestID))
				continue
			}
			follow = append(follow, follower{p, first})
			continue
		}
		var failed []KeyState
		for _, op := range p.c.Ops {
			e, inBatch := overlay[op.Key]
			if !inBatch {
				e, _ = st.tree.Get(&Entry{Key: op.Key})
			}
			if !op.Cond.holds(e) {
				failed = append(failed, keyStateOf(op.Key, e))
			}
		}
		if failed != nil {
			q.fail(p, &PreconditionError{Keys: failed})
			continue
		}
		if err := schemas.check(p.c.Ops, func(key string) *Entry {
			if e, ok := overlay[key]; ok {
				return e
			}
			e, _ := st.tree.Get(&Entry{Key: key})
			return e
		}, st); err != nil {
			q.fail(p, err)
			continue
		}
		if p.c.ValidateOnly {
			res := CommitResult{Cursor: cur}
			q.count(res, nil)
			p.answer(res, nil)
			continue
		}
		schemas.commit()
		for _, op := range p.c.Ops {
			// Version unknown until written: no version precondition of a
			// later Commit in this transaction can match it.
			overlay[op.Key] = &Entry{Key: op.Key, Value: op.Value, ContentType: op.ContentType, Deleted: op.Delete, Partition: -1, Offset: -1}
		}
		ids[p.c.RequestID] = p
		write = append(write, p)
	}
	return write, follow
}

func keyStateOf(key string, e *Entry) KeyState {
	switch {
	case e == nil || e.Deleted:
		return KeyState{Key: key}
	case e.Offset < 0:
		return KeyState{Key: key, Live: true, Pending: true}
	}
	return KeyState{Key: key, Live: true, Version: Version{e.Partition, e.Offset}}
}

// errNotReadBack: Kafka acknowledged the commit, but the records were
// not in the log when read back (the transaction was aborted).
var errNotReadBack = errors.New("the commit was acknowledged but its records were not read back from the log (the transaction was aborted)")

// write commits the records of ps in one transaction, reads them back and
// answers those it read back; it returns the others, unanswered, with the
// reason. A commit is answered only once the store has applied its
// records at the versions produced: an acknowledgement alone is not
// trusted (under heavy fencing Kafka 4.4 was seen acknowledging a commit
// whose records another gateway's fence had aborted).
func (q *sequencer) write(ctx context.Context, ps []*pending) ([]*pending, error) {
	tctx, cancel := context.WithTimeout(ctx, q.s.cfg.ProduceTimeout)
	defer cancel()
	if err := q.cl.BeginTransaction(); err != nil {
		return ps, fmt.Errorf("begin transaction: %w", err)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	sent := make([][]*kgo.Record, len(ps))
	for i, p := range ps {
		sent[i] = make([]*kgo.Record, len(p.recs))
		for j, r := range p.recs {
			// A fresh record per attempt: the producer fills in its fields.
			rr := &kgo.Record{Key: r.Key, Value: r.Value, Headers: r.Headers}
			sent[i][j] = rr
			wg.Add(1)
			q.cl.Produce(tctx, rr, func(_ *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
				wg.Done()
			})
		}
	}
	wg.Wait()
	if firstErr != nil {
		_ = q.cl.EndTransaction(tctx, kgo.TryAbort)
		return ps, fmt.Errorf("produce in transaction: %w", classifyProduceErr(firstErr))
	}
	if err := q.cl.EndTransaction(tctx, kgo.TryCommit); err != nil {
		return ps, fmt.Errorf("commit transaction: %w", classifyProduceErr(err))
	}
	q.s.touch()
	s := q.s
	s.mu.Lock()
	for _, rs := range sent {
		for _, r := range rs {
			for int(r.Partition) >= len(s.produced) {
				s.produced = append(s.produced, 0)
			}
			s.produced[r.Partition] = max(s.produced[r.Partition], r.Offset+1)
			for int(r.Partition) >= len(q.own) {
				q.own = append(q.own, 0)
			}
			q.own[r.Partition] = max(q.own[r.Partition], r.Offset+1)
		}
	}
	s.mu.Unlock()
	if err := s.waitOffsets(tctx, q.own); err != nil {
		return ps, fmt.Errorf("%w: committed, but not read back in %s: %w", ErrUnreachable, s.cfg.ProduceTimeout, err)
	}
	s.mu.RLock()
	c := cursor.Max(cursor.Cursor{Topic: s.st.topic, Offsets: s.st.next}, cursor.Cursor{Topic: s.st.topic, Offsets: s.produced})
	var left []*pending
	var answers []CommitResult
	var done []*pending
	for i, p := range ps {
		res := CommitResult{Versions: make([]Version, len(sent[i])), Cursor: c}
		for j, r := range sent[i] {
			res.Versions[j] = Version{r.Partition, r.Offset}
		}
		if got, ok := s.st.ids.get(p.c.RequestID); !ok || !slices.Equal(got.versions, res.Versions) {
			left = append(left, p)
			continue
		}
		done = append(done, p)
		answers = append(answers, res)
	}
	s.mu.RUnlock()
	for i, p := range done {
		q.count(answers[i], nil)
		p.answer(answers[i], nil)
	}
	if len(left) > 0 {
		s.m.notReadBack.Add(float64(len(left)))
		s.log.Warn("a commit Kafka acknowledged was not in the log when read back: retrying it under its request ID", "writes", len(left), "first_request_id", left[0].c.RequestID)
		return left, errNotReadBack
	}
	return nil, nil
}

// committedEnds lists the last stable offset of every partition.
func (s *Store) committedEnds(ctx context.Context) ([]int64, error) {
	lo, err := s.adm.ListCommittedOffsets(ctx, s.cfg.Topic)
	if err != nil {
		return nil, fmt.Errorf("list last stable offsets of %q: %w", s.cfg.Topic, err)
	}
	var out []int64
	var perr error
	lo.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			perr = fmt.Errorf("last stable offset of %q partition %d: %w", s.cfg.Topic, o.Partition, o.Err)
			return
		}
		for int(o.Partition) >= len(out) {
			out = append(out, 0)
		}
		out[o.Partition] = max(o.Offset, 0)
	})
	return out, perr
}

// waitOffsets waits until the state has applied offs in every partition.
func (s *Store) waitOffsets(ctx context.Context, offs []int64) error {
	s.mu.RLock()
	topic := s.st.topic
	s.mu.RUnlock()
	return s.WaitApplied(ctx, cursor.Cursor{Topic: topic, Offsets: offs})
}
