package client

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/google/btree"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/digest"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// replica is the working copy of the view, owned by the run goroutine. Its
// tree is modified in place and published as copy-on-write clones, so
// readers never see a partial update and never block the writer.
type replica struct {
	tree   *btree.BTreeG[*Entry]
	sum    digest.Digest
	cur    cursor.Cursor
	synced bool // a snapshot has been applied: cur is meaningful
	// fresh asks the next stream to start without a resume cursor; set
	// after the gateway refused the cursor or sent a snapshot that failed
	// its checks, cleared once a snapshot is applied. The view's cursor
	// still guards against going backwards meanwhile.
	fresh bool
	// live is true once a gateway vouched for the view: it applied a
	// snapshot, or a delta or progress cursor that covers the view's. A
	// view loaded from the state file is synced (its cursor is meaningful
	// and is resumed from) but not live until then.
	live bool
}

func newReplica() *replica { return &replica{tree: newTree()} }

// publish returns an immutable version of the current state.
func (r *replica) publish() *state {
	return &state{tree: r.tree.Clone(), cur: r.cur, synced: r.synced, sum: r.sum}
}

// protocolError is a gateway message the client refuses to apply. The
// stream is dropped; nothing of the offending message was applied.
type protocolError struct {
	msg string
	// fresh asks to resubscribe without a cursor: the gateway's view and
	// ours may disagree (snapshot failed its checks).
	fresh bool
}

func (e *protocolError) Error() string { return "gateway protocol violation: " + e.msg }

func violation(fresh bool, format string, args ...any) error {
	return &protocolError{msg: fmt.Sprintf(format, args...), fresh: fresh}
}

// session is the per-stream state of the message handler.
type session struct {
	// resumed is true when the request carried a resume cursor.
	resumed bool
	// building collects snapshot chunks until SnapshotEnd; nil outside a
	// snapshot.
	building *snapshotBuilder
}

type snapshotBuilder struct {
	tree *btree.BTreeG[*Entry]
	sum  digest.Digest
	// next is, per partition, one past the highest offset received: every
	// entry must lie before the snapshot's cursor.
	next map[int32]int64
}

// result tells the run loop what a handled message did.
type result struct {
	changed bool    // the view changed: publish it
	moved   bool    // only the cursor moved: publish it
	events  []Event // for OnChange, in order
	reset   bool    // a snapshot replaced an existing view
	// vouched: the message carried a cursor the view now stands at (a
	// snapshot end, a delta, a progress cursor that passed the checks).
	vouched bool
	first   bool // the first message that vouched for this view: synced
	// progress fields, when the message was a Progress
	progress *confgatev1.Progress
}

// handle applies one message. On error nothing was applied.
func (r *replica) handle(s *session, m *confgatev1.SubscribeResponse) (res result, err error) {
	switch {
	case m.GetSnapshotChunk() != nil:
		err = r.chunk(s, m.GetSnapshotChunk())
	case m.GetSnapshotEnd() != nil:
		res, err = r.snapshotEnd(s, m.GetSnapshotEnd())
	case m.GetDelta() != nil:
		res, err = r.delta(s, m.GetDelta())
	case m.GetProgress() != nil:
		res, err = r.progress(s, m.GetProgress())
	}
	// An unknown message kind from a newer gateway is skipped.
	if err == nil && res.vouched && !r.live {
		r.live, res.first = true, true
	}
	return res, err
}

func (r *replica) chunk(s *session, c *confgatev1.SnapshotChunk) error {
	if s.building == nil {
		s.building = &snapshotBuilder{tree: newTree(), next: map[int32]int64{}}
	}
	b := s.building
	for _, pe := range c.GetEntries() {
		e, err := fromProto(pe)
		if err != nil {
			return violation(true, "snapshot chunk: %v", err)
		}
		if old, ok := b.tree.ReplaceOrInsert(e); ok {
			removeEntry(&b.sum, old)
		}
		addEntry(&b.sum, e)
		if e.Offset+1 > b.next[e.Partition] {
			b.next[e.Partition] = e.Offset + 1
		}
	}
	return nil
}

func (r *replica) snapshotEnd(s *session, end *confgatev1.SnapshotEnd) (result, error) {
	b := s.building
	s.building = nil
	if b == nil {
		b = &snapshotBuilder{tree: newTree()}
	}
	next, err := cursor.Decode(end.GetCursor())
	if err != nil {
		return result{}, violation(true, "snapshot end: %v", err)
	}
	if got, want := uint64(b.tree.Len()), end.GetEntryCount(); got != want {
		return result{}, violation(true, "snapshot has %d entries, its end says %d", got, want)
	}
	// A gateway always sends the digest; an empty one (a third-party
	// gateway that does not compute it) is not checked.
	if d := end.GetDigest(); len(d) != 0 && !bytes.Equal(d, b.sum.Bytes()) {
		return result{}, violation(true, "snapshot digest %x does not match the received entries (%x)", d, b.sum.Bytes())
	}
	for p, n := range b.next {
		if n > next.Offset(p) {
			return result{}, violation(true, "snapshot holds an entry at partition %d offset %d, at or past its cursor %d", p, n-1, next.Offset(p))
		}
	}
	if r.synced && !snapshotMayReplace(r.cur, next, end, s.resumed) {
		return result{}, violation(false, "snapshot cursor %s (reason %v, reset %v) is behind the view's cursor %s",
			next, end.GetReason(), end.GetReset_(), r.cur)
	}
	res := result{changed: true, reset: r.synced, vouched: true}
	r.tree, r.sum, r.cur, r.synced, r.fresh = b.tree, b.sum, next, true, false
	kind := EventSnapshot
	if res.reset {
		kind = EventReset
	}
	res.events = []Event{{Kind: kind, Cursor: next.String()}}
	return res, nil
}

// snapshotMayReplace decides whether a snapshot at next may replace a view
// at cur. Never backwards: it must cover cur, unless the gateway flagged a
// reset that legitimately moves versions (another topic, or state rebuilt
// after a truncation). A snapshot of another topic on a stream without a
// resume cursor is accepted too: the gateway had nothing to flag it
// against, and cursors of two topics cannot be compared.
func snapshotMayReplace(cur, next cursor.Cursor, end *confgatev1.SnapshotEnd, resumed bool) bool {
	if next.Covers(cur) {
		return true
	}
	otherTopic := next.Topic != cur.Topic
	if end.GetReset_() {
		switch {
		case otherTopic,
			end.GetReason() == confgatev1.SnapshotReason_SNAPSHOT_REASON_TOPIC_CHANGED,
			end.GetReason() == confgatev1.SnapshotReason_SNAPSHOT_REASON_STATE_REBUILT:
			return true
		}
	}
	return otherTopic && !resumed
}

// delta validates the whole delta, then applies it. Per key, a change that
// is not newer than the view's version is skipped.
func (r *replica) delta(s *session, d *confgatev1.Delta) (result, error) {
	if s.building != nil {
		return result{}, violation(true, "delta in the middle of a snapshot")
	}
	if !r.synced {
		return result{}, violation(true, "delta before any snapshot")
	}
	next, err := r.advance(d.GetCursor(), "delta")
	if err != nil {
		return result{}, err
	}
	ops := make([]deltaOp, 0, len(d.GetChanges()))
	for i, c := range d.GetChanges() {
		var o deltaOp
		var p int32
		var off int64
		switch {
		case c.GetPut() != nil:
			e, err := fromProto(c.GetPut())
			if err != nil {
				return result{}, violation(false, "delta change %d: %v", i, err)
			}
			o.put, p, off = e, e.Partition, e.Offset
		case c.GetDelete() != nil:
			del := c.GetDelete()
			if del.GetKey() == "" || del.GetVersion() == nil {
				return result{}, violation(false, "delta change %d: deletion without key or version", i)
			}
			if err := checkVersion(del.GetKey(), del.GetVersion()); err != nil {
				return result{}, violation(false, "delta change %d: %v", i, err)
			}
			o.del, p, off = del, del.GetVersion().GetPartition(), del.GetVersion().GetOffset()
		default:
			return result{}, violation(false, "delta change %d is empty", i)
		}
		if off >= next.Offset(p) {
			return result{}, violation(false, "delta change %d at partition %d offset %d is at or past the delta's cursor %d", i, p, off, next.Offset(p))
		}
		ops = append(ops, o)
	}

	res := result{moved: true, vouched: true}
	cs := next.String()
	for _, o := range ops {
		// A change below the view's cursor in its partition is one the
		// view applied already, or one a later record superseded: it is
		// ignored, like any change not newer than what the view holds.
		// Judged per key alone, a put of a key deleted since would bring
		// the key back.
		if p, off := o.version(); off < r.cur.Offset(p) {
			continue
		}
		if o.put != nil {
			old, ok := r.tree.Get(o.put)
			if ok && !newer(o.put.Partition, o.put.Offset, old) {
				continue
			}
			r.tree.ReplaceOrInsert(o.put)
			if ok {
				removeEntry(&r.sum, old)
			}
			addEntry(&r.sum, o.put)
			e := *o.put // a copy, so a callback cannot alter the view's entry
			res.events = append(res.events, Event{Kind: EventPut, Key: e.Key, Entry: &e, Cursor: cs})
			continue
		}
		v := o.del.GetVersion()
		old, ok := r.tree.Get(&Entry{Key: o.del.GetKey()})
		if !ok || !newer(v.GetPartition(), v.GetOffset(), old) {
			continue
		}
		r.tree.Delete(old)
		removeEntry(&r.sum, old)
		res.events = append(res.events, Event{Kind: EventDelete, Key: old.Key, Cursor: cs})
	}
	res.changed = len(res.events) > 0
	r.cur = next
	return res, nil
}

func (r *replica) progress(s *session, p *confgatev1.Progress) (result, error) {
	res := result{progress: p}
	// A cursor means something only against a view; during a snapshot the
	// view is about to be replaced and the end carries the cursor.
	if !r.synced || s.building != nil || len(p.GetCursor()) == 0 {
		return res, nil
	}
	next, err := r.advance(p.GetCursor(), "progress")
	if err != nil {
		return result{}, err
	}
	res.moved = !next.Equal(r.cur)
	res.vouched = true
	r.cur = next
	return res, nil
}

// advance decodes a delta or progress cursor and checks that it does not
// move the view backwards.
func (r *replica) advance(b []byte, what string) (cursor.Cursor, error) {
	next, err := cursor.Decode(b)
	if err != nil {
		return cursor.Cursor{}, violation(false, "%s: %v", what, err)
	}
	switch {
	case next.Topic != r.cur.Topic:
		return cursor.Cursor{}, violation(false, "%s cursor %s is of topic %s, the view's cursor %s of topic %s", what, next, next.Topic, r.cur, r.cur.Topic)
	case !next.Covers(r.cur):
		return cursor.Cursor{}, violation(false, "%s cursor %s is behind the view's cursor %s", what, next, r.cur)
	}
	return next, nil
}

// deltaOp is one validated change of a delta.
type deltaOp struct {
	put *Entry
	del *confgatev1.Deletion
}

func (o deltaOp) version() (int32, int64) {
	if o.put != nil {
		return o.put.Partition, o.put.Offset
	}
	return o.del.GetVersion().GetPartition(), o.del.GetVersion().GetOffset()
}

// newer reports whether version (p, off) may replace old. In the same
// partition the offset must grow; a different partition is accepted, as
// the gateway decides which partition owns a key.
func newer(p int32, off int64, old *Entry) bool {
	return p != old.Partition || off > old.Offset
}

// addEntry and removeEntry keep a digest in step with a set of entries.
func addEntry(d *digest.Digest, e *Entry) { d.Add(digest.Hash(e.Key, e.Value, e.Partition, e.Offset)) }

func removeEntry(d *digest.Digest, e *Entry) {
	d.Remove(digest.Hash(e.Key, e.Value, e.Partition, e.Offset))
}

var errNoVersion = errors.New("entry has no version")

// checkVersion refuses a version that is no Kafka position: a negative
// partition or offset would lie "before" any cursor (Offset of an unknown
// partition is 0) and, as another partition, would replace or delete any
// entry regardless of its version.
func checkVersion(key string, v *confgatev1.Version) error {
	if v.GetPartition() < 0 || v.GetOffset() < 0 {
		return fmt.Errorf("entry %q has version partition %d offset %d, not a Kafka position", key, v.GetPartition(), v.GetOffset())
	}
	return nil
}

// toProto is fromProto's inverse, for the state file.
func toProto(e *Entry) *confgatev1.Entry {
	pe := &confgatev1.Entry{
		Key:         e.Key,
		Value:       e.Value,
		Version:     &confgatev1.Version{Partition: e.Partition, Offset: e.Offset},
		ContentType: e.ContentType,
	}
	if len(e.Headers) > 0 {
		pe.Headers = make([]*confgatev1.Header, len(e.Headers))
		for i, h := range e.Headers {
			pe.Headers[i] = &confgatev1.Header{Key: h.Key, Value: h.Value}
		}
	}
	return pe
}

func fromProto(pe *confgatev1.Entry) (*Entry, error) {
	if pe.GetKey() == "" {
		return nil, errors.New("entry has no key")
	}
	if pe.GetVersion() == nil {
		return nil, fmt.Errorf("entry %q: %w", pe.GetKey(), errNoVersion)
	}
	if err := checkVersion(pe.GetKey(), pe.GetVersion()); err != nil {
		return nil, err
	}
	e := &Entry{
		Key:         pe.GetKey(),
		Value:       pe.GetValue(),
		Partition:   pe.GetVersion().GetPartition(),
		Offset:      pe.GetVersion().GetOffset(),
		ContentType: pe.GetContentType(),
	}
	if hs := pe.GetHeaders(); len(hs) > 0 {
		e.Headers = make([]Header, len(hs))
		for i, h := range hs {
			e.Headers[i] = Header{Key: h.GetKey(), Value: h.GetValue()}
		}
	}
	return e, nil
}
