package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/zeebo/xxh3"
)

// Op is one operation of a Commit: a put or, with Delete, a delete, with
// an optional precondition on the key's current state.
type Op struct {
	Write
	Cond Cond
}

// Commit is a write through the serialization point: conditional,
// retry-safe (by request ID) and atomic over its operations.
type Commit struct {
	Ops []Op
	// RequestID makes retries safe; "" gets a generated one, which still
	// makes the store's own retries safe.
	RequestID string
	// ValidateOnly checks everything and writes nothing.
	ValidateOnly bool
}

// Version is a record's position: an entry's version.
type Version struct {
	Partition int32
	Offset    int64
}

// CommitResult is what a Commit wrote.
type CommitResult struct {
	// Versions of the operations' records, in Ops order (none with
	// ValidateOnly).
	Versions []Version
	// Cursor includes the whole commit (and this store's earlier writes).
	Cursor cursor.Cursor
	// Duplicate: the request ID had already landed; Versions are the
	// original write's and nothing was written.
	Duplicate bool
}

// KeyState is a key's current state in a PreconditionError.
type KeyState struct {
	Key  string
	Live bool
	// Version, when Live; Pending when the key is written by an earlier
	// commit of the same transaction whose version is not known yet.
	Version Version
	Pending bool
}

// PreconditionError lists the operations whose precondition failed.
type PreconditionError struct {
	Keys []KeyState
}

func (e *PreconditionError) Error() string {
	var b strings.Builder
	b.WriteString("precondition failed: ")
	for i, k := range e.Keys {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(strconv.Quote(k.Key))
		switch {
		case k.Pending:
			b.WriteString(" is being written by a concurrent request")
		case k.Live:
			fmt.Fprintf(&b, " is at version %d:%d", k.Version.Partition, k.Version.Offset)
		default:
			b.WriteString(" is absent")
		}
	}
	return b.String()
}

// ErrRequestIDReused: a request ID already landed with other operations.
var ErrRequestIDReused = errors.New("request ID already used for a different write")

// Commit writes c through the serialization point and answers once Kafka
// committed it: with ErrNotReady, ErrUnreachable, a *RuleError, a
// *PreconditionError, a *SchemaError or ErrRequestIDReused (nothing
// written), or the versions. An error wrapping ErrUnreachable means the
// write may have landed: retry with the same request ID.
func (s *Store) Commit(ctx context.Context, c Commit) (CommitResult, error) {
	if len(c.Ops) == 0 {
		return CommitResult{}, &RuleError{Kind: ErrBadOps, Field: "operations", Msg: "no operations: give at least one put or delete"}
	}
	if len(c.Ops) > MaxSetOps {
		return CommitResult{}, &RuleError{Kind: ErrBadOps, Field: "operations", Msg: fmt.Sprintf("%d operations, more than the limit %d: split the change into smaller sets", len(c.Ops), MaxSetOps)}
	}
	if err := CheckRequestID(c.RequestID); err != nil {
		return CommitResult{}, &RuleError{Kind: ErrBadOps, Field: "request_id", Msg: err.Error()}
	}
	if c.RequestID == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		c.RequestID = "g-" + hex.EncodeToString(b[:])
	}
	seen := make(map[string]int, len(c.Ops))
	total := 0
	recs := make([]*kgo.Record, len(c.Ops))
	for i, op := range c.Ops {
		if j, dup := seen[op.Key]; dup {
			return CommitResult{}, &RuleError{Kind: ErrBadOps, Field: "operations", Msg: fmt.Sprintf("operations %d and %d both write %q: a change set writes each key at most once", j, i, op.Key)}
		}
		seen[op.Key] = i
		headers, err := checkWrite(op.Write)
		if err == nil {
			// The gateway's own headers must fit the header limits too, or
			// every reader would skip the record.
			headers = append(headers, kgo.RecordHeader{Key: SetHeader, Value: []byte(SetMark{Index: i, Count: len(c.Ops), ID: c.RequestID}.String())})
			if op.Cond.Kind != CondNone {
				headers = append(headers, kgo.RecordHeader{Key: IfHeader, Value: []byte(op.Cond.String())})
			}
			err = checkKgoHeaders(headers)
		}
		if err == nil {
			err = s.checkTopicLimit(op.Write, headers)
		}
		if err != nil {
			var re *RuleError
			if errors.As(err, &re) && len(c.Ops) > 1 {
				re2 := *re
				re2.Msg = fmt.Sprintf("operation %d (%q): %s", i, op.Key, re.Msg)
				return CommitResult{}, &re2
			}
			return CommitResult{}, fmt.Errorf("commit: %w", err)
		}
		total += len(op.Key) + len(op.Value) + recordOverhead(len(headers))
		r := &kgo.Record{Key: []byte(op.Key), Headers: headers}
		if !op.Delete {
			r.Value = op.Value
			if r.Value == nil {
				r.Value = []byte{}
			}
		}
		recs[i] = r
	}
	if total > MaxSetBytes {
		return CommitResult{}, &RuleError{Kind: ErrBadOps, Field: "operations", Msg: fmt.Sprintf("the change set is about %d bytes, more than the limit %d: split it", total, MaxSetBytes)}
	}
	if s.Stale() {
		return CommitResult{}, fmt.Errorf("%w: no answer from Kafka for over %s", ErrUnreachable, s.cfg.StaleAfter)
	}
	// Queued writes are bounded in bytes: past the bound a caller waits
	// (bounded by its context) instead of growing the queue.
	weight := int64(total + 256)
	if err := s.seq.room.Acquire(ctx, weight); err != nil {
		return CommitResult{}, err
	}
	p := &pending{ctx: ctx, c: c, recs: recs, keys: keysHash(c.Ops), done: make(chan answer, 1), finished: make(chan struct{})}
	select {
	case s.seq.queue <- p:
	case <-ctx.Done():
		s.seq.room.Release(weight)
		return CommitResult{}, ctx.Err()
	}
	// Released once the sequencer is done with p (answered), not when the
	// caller stops waiting: until then p's records are held.
	go func() {
		<-p.finished
		s.seq.room.Release(weight)
	}()
	select {
	case a := <-p.done:
		return a.res, a.err
	case <-ctx.Done():
		// The sequencer still answers p; the caller gave up. The write
		// may land: the request ID makes a retry safe.
		return CommitResult{}, ctx.Err()
	}
}

// ErrBadOps: a Commit's operations break a rule of change sets.
var ErrBadOps = errors.New("invalid change set")

// keysHash identifies a commit's keys by position, to recognize a request
// ID reused for another write.
func keysHash(ops []Op) uint64 {
	var h uint64
	for i, op := range ops {
		h += keyHash(i, op.Key)
	}
	return h + uint64(len(ops))<<56
}

// keyHash is key's hash at position i: seeded by the position, so no
// string is built per record (the store computes it for every record with
// a request ID while bootstrapping).
func keyHash(i int, key string) uint64 {
	return xxh3.HashStringSeed(key, uint64(i))
}

func checkKgoHeaders(hs []kgo.RecordHeader) error {
	views := make([]headerView, len(hs))
	for i, h := range hs {
		views[i] = headerView{h.Key, h.Value}
	}
	_, err := checkHeaders(views)
	return err
}
