package history

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/digest"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// Change is one entry as a client received it: a put (in a snapshot or a
// delta) or, with Deleted, a delete. Partition and Offset are its version.
type Change struct {
	Key       string
	Value     []byte
	Partition int32
	Offset    int64
	Deleted   bool
}

func (c Change) String() string {
	if c.Deleted {
		return fmt.Sprintf("delete %q @%d:%d", c.Key, c.Partition, c.Offset)
	}
	return fmt.Sprintf("put %q=%s @%d:%d", c.Key, clipValue(c.Value), c.Partition, c.Offset)
}

// Kind is the kind of an observation.
type Kind int

const (
	// Snapshot: a whole snapshot, every chunk up to its SnapshotEnd.
	Snapshot Kind = iota + 1
	// Delta: one Delta message.
	Delta
	// Progress: one Progress message.
	Progress
)

func (k Kind) String() string {
	switch k {
	case Snapshot:
		return "snapshot"
	case Delta:
		return "delta"
	case Progress:
		return "progress"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Obs is one thing a client observed on a Subscribe stream.
type Obs struct {
	Kind   Kind
	Cursor cursor.Cursor
	// Changes: for a Snapshot the full set of entries (all chunks up to
	// the SnapshotEnd), for a Delta its changes in message order.
	Changes []Change
	// Reset: a snapshot flagged reset (any reason but INITIAL).
	Reset bool
	// Reason is the snapshot reason, for messages.
	Reason string
	// Digest, when set on a snapshot, is the digest the gateway claimed
	// for it; the checker verifies it against the entries.
	Digest []byte
	// Coalesced: a delta flagged coalesced (latest per key).
	Coalesced bool
	// Resumed: the first observation on a new stream opened with a resume
	// cursor. Set by ClientLog.Reconnect; a caller that sets it without
	// calling Reconnect means "resumed from the last cursor observed".
	Resumed bool
}

// reconnect is a new stream, opened before the observation it is attached
// to.
type reconnect struct {
	from       cursor.Cursor
	withCursor bool
	addr       string
	bad        string // the resume cursor was undecodable
}

type event struct {
	obs Obs
	rc  *reconnect // the stream this observation opened, if it is a stream's first
	bad string     // a protocol error the adapter found in this observation
}

// Recorder records what every client observed. It is safe for concurrent
// use; its zero value is ready to use.
type Recorder struct {
	mu      sync.Mutex
	clients map[string]*ClientLog
}

// NewRecorder returns an empty recorder.
func NewRecorder() *Recorder { return &Recorder{} }

// Client returns the log of the named client, creating it with its
// selector (key prefixes; none, or "" among them, selects every key). A
// name already in use returns the existing log; its selector is kept.
//
// A ClientLog is one logical view: everything the client observed, over
// any number of streams and gateways; every resume must use the last
// cursor it observed. A process that starts over is a new client: without
// a view (no cursor), or restarted from a saved view, whose cursor may be
// older than the last one the previous process observed (its first stream
// resumes from the saved cursor, and Check takes the view to be the log's
// state there).
func (r *Recorder) Client(name string, prefixes []string) *ClientLog {
	r.mu.Lock()
	defer r.mu.Unlock()
	if c, ok := r.clients[name]; ok {
		return c
	}
	if r.clients == nil {
		r.clients = map[string]*ClientLog{}
	}
	c := &ClientLog{name: name, sel: newSelector(prefixes), view: map[string]Change{}}
	r.clients[name] = c
	return c
}

// Clients lists the client names in order.
func (r *Recorder) Clients() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.clients))
}

// View returns the named client's view, replayed from its observations
// (nil for an unknown client). See ClientLog.View.
func (r *Recorder) View(name string) map[string]Change {
	r.mu.Lock()
	c := r.clients[name]
	r.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.View()
}

func (r *Recorder) all() []*ClientLog {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*ClientLog, 0, len(r.clients))
	for _, name := range slices.Sorted(maps.Keys(r.clients)) {
		out = append(out, r.clients[name])
	}
	return out
}

// ClientLog is what one client observed. Safe for concurrent use, but the
// order of calls is the order of observations: feed it from the goroutine
// that reads the stream.
type ClientLog struct {
	name string
	sel  selector

	mu      sync.Mutex
	events  []event
	pending *reconnect // the stream the next observation comes from
	// Snapshot chunks received since the last SnapshotEnd (ObserveProto).
	chunk    []Change
	chunkBad string
	inChunk  bool
	last     cursor.Cursor
	hasLast  bool
	view     map[string]Change
	final    map[string]Change
	hasFinal bool
	stream   int // ObserveStream's current stream number
}

// Name is the client's name.
func (c *ClientLog) Name() string { return c.name }

// Prefixes is the client's selector, normalized (nil selects everything).
func (c *ClientLog) Prefixes() []string { return slices.Clone(c.sel.prefixes) }

// Observe records one observation.
func (c *ClientLog) Observe(o Obs) {
	c.mu.Lock()
	defer c.mu.Unlock()
	bad := ""
	if c.inChunk && o.Kind != Snapshot {
		bad = fmt.Sprintf("%d snapshot chunk entries were not closed by a SnapshotEnd before this %s", len(c.chunk), o.Kind)
	}
	c.inChunk, c.chunk, c.chunkBad = false, nil, ""
	c.observeLocked(o, bad)
}

func (c *ClientLog) observeLocked(o Obs, bad string) {
	o.Changes = slices.Clone(o.Changes)
	o.Cursor = o.Cursor.Clone()
	rc := c.pending
	c.pending = nil
	if rc == nil && o.Resumed {
		rc = &reconnect{from: c.last.Clone(), withCursor: c.hasLast}
	}
	o.Resumed = rc != nil && rc.withCursor
	c.events = append(c.events, event{obs: o, rc: rc, bad: bad})
	c.last, c.hasLast = o.Cursor, true
	c.view = applyToView(c.view, &o)
}

// Reconnect marks that the next observation comes from a new stream,
// opened with resume cursor resumeFrom (the zero cursor: without one) on
// addr (for messages only). Snapshot chunks of the previous stream that no
// SnapshotEnd closed are dropped, as a client drops them.
func (c *ClientLog) Reconnect(resumeFrom cursor.Cursor, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reconnectLocked(resumeFrom, addr)
}

func (c *ClientLog) reconnectLocked(resumeFrom cursor.Cursor, addr string) {
	c.inChunk, c.chunk, c.chunkBad = false, nil, ""
	with := resumeFrom.Topic != (cursor.TopicID{}) || len(resumeFrom.Offsets) > 0
	c.pending = &reconnect{from: resumeFrom.Clone(), withCursor: with, addr: addr}
}

// ObserveStream records a message that arrived on stream number stream
// (any numbering that changes on every new stream), opened to addr with
// resumeCursor (nil: none). A new number is a Reconnect. It fits a
// client's per-message hook, such as the Go client library's
// Config.Observe:
//
//	Observe: func(o client.Observation) { cl.ObserveStream(o.Stream, o.Addr, o.ResumeCursor, o.Message) }
func (c *ClientLog) ObserveStream(stream int, addr string, resumeCursor []byte, m *confgatev1.SubscribeResponse) {
	c.mu.Lock()
	if stream != c.stream || len(c.events) == 0 && c.pending == nil {
		from, bad := cursor.Cursor{}, ""
		if len(resumeCursor) > 0 {
			from, bad = decode(resumeCursor)
		}
		c.reconnectLocked(from, addr)
		if bad != "" {
			c.pending.bad = "resume cursor: " + bad
		}
		c.stream = stream
	}
	c.mu.Unlock()
	c.ObserveProto(m)
}

// ObserveProto records a Subscribe message: snapshot chunks are buffered
// until their SnapshotEnd, which becomes one Snapshot observation; a
// Delta or Progress becomes one observation. Protocol errors (an
// undecodable cursor, chunk entries out of key order, an entry_count that
// does not match the chunks) are recorded and reported by Check.
func (c *ClientLog) ObserveProto(m *confgatev1.SubscribeResponse) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch x := m.GetMessage().(type) {
	case *confgatev1.SubscribeResponse_SnapshotChunk:
		c.inChunk = true
		for _, e := range x.SnapshotChunk.GetEntries() {
			ch := entryChange(e)
			if n := len(c.chunk); n > 0 && c.chunkBad == "" && c.chunk[n-1].Key >= ch.Key {
				c.chunkBad = fmt.Sprintf("snapshot entries out of key order: %q after %q", ch.Key, c.chunk[n-1].Key)
			}
			c.chunk = append(c.chunk, ch)
		}
	case *confgatev1.SubscribeResponse_SnapshotEnd:
		end := x.SnapshotEnd
		cur, bad := decode(end.GetCursor())
		if bad == "" {
			bad = c.chunkBad
		}
		if bad == "" && end.GetEntryCount() != uint64(len(c.chunk)) {
			bad = fmt.Sprintf("snapshot_end says %d entries, its chunks held %d", end.GetEntryCount(), len(c.chunk))
		}
		o := Obs{Kind: Snapshot, Cursor: cur, Changes: c.chunk, Reset: end.GetReset_(), Reason: end.GetReason().String(), Digest: end.GetDigest()}
		c.inChunk, c.chunk, c.chunkBad = false, nil, ""
		c.observeLocked(o, bad)
	case *confgatev1.SubscribeResponse_Delta:
		cur, bad := decode(x.Delta.GetCursor())
		if bad == "" && c.inChunk {
			bad = fmt.Sprintf("%d snapshot chunk entries were not closed by a SnapshotEnd before this delta", len(c.chunk))
		}
		o := Obs{Kind: Delta, Cursor: cur, Coalesced: x.Delta.GetCoalesced()}
		for _, ch := range x.Delta.GetChanges() {
			switch v := ch.GetChange().(type) {
			case *confgatev1.Change_Put:
				o.Changes = append(o.Changes, entryChange(v.Put))
			case *confgatev1.Change_Delete:
				d := v.Delete
				o.Changes = append(o.Changes, Change{Key: d.GetKey(), Partition: d.GetVersion().GetPartition(), Offset: d.GetVersion().GetOffset(), Deleted: true})
			default:
				if bad == "" {
					bad = "a delta change that is neither a put nor a delete"
				}
			}
		}
		c.inChunk, c.chunk, c.chunkBad = false, nil, ""
		c.observeLocked(o, bad)
	case *confgatev1.SubscribeResponse_Progress:
		cur, bad := decode(x.Progress.GetCursor())
		if bad == "" && c.inChunk {
			bad = fmt.Sprintf("%d snapshot chunk entries were not closed by a SnapshotEnd before this progress", len(c.chunk))
		}
		c.inChunk, c.chunk, c.chunkBad = false, nil, ""
		c.observeLocked(Obs{Kind: Progress, Cursor: cur}, bad)
	}
}

func decode(b []byte) (cursor.Cursor, string) {
	c, err := cursor.Decode(b)
	if err != nil {
		return cursor.Cursor{}, "undecodable cursor: " + err.Error()
	}
	return c, ""
}

func entryChange(e *confgatev1.Entry) Change {
	return Change{Key: e.GetKey(), Value: e.GetValue(), Partition: e.GetVersion().GetPartition(), Offset: e.GetVersion().GetOffset()}
}

// Final records the view the client itself ended with (for example the Go
// client library's local view). Check verifies it like the replayed view.
func (c *ClientLog) Final(view map[string]Change) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.final, c.hasFinal = maps.Clone(view), true
}

// Cursor returns the last cursor observed (the zero cursor before any).
// It is the cursor a careful client resumes with.
func (c *ClientLog) Cursor() cursor.Cursor {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.last.Clone()
}

// Len is the number of observations recorded.
func (c *ClientLog) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.events)
}

// View returns the client's view replayed from its observations alone:
// the last snapshot plus the deltas after it (a client restored from a
// saved view before its first observation starts from an empty one here;
// Check starts it from the log's state at its resume cursor).
func (c *ClientLog) View() map[string]Change {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.view)
}

// snapshot copies what Check needs.
func (c *ClientLog) snapshot() clientRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := clientRecord{name: c.name, sel: c.sel, events: slices.Clone(c.events), final: c.final, hasFinal: c.hasFinal}
	if c.pending != nil {
		p := *c.pending
		r.trailing = &p
	}
	return r
}

type clientRecord struct {
	name     string
	sel      selector
	events   []event
	trailing *reconnect // a reconnect no observation followed
	final    map[string]Change
	hasFinal bool
}

// Digest returns the state digest of a view, as gateways compute it over
// the same entries (deleted entries are ignored).
func Digest(view map[string]Change) []byte {
	var d digest.Digest
	for _, c := range view {
		if !c.Deleted {
			d.Add(digest.Hash(c.Key, c.Value, c.Partition, c.Offset))
		}
	}
	return d.Bytes()
}

func digestOf(changes []Change) []byte {
	var d digest.Digest
	for _, c := range changes {
		if !c.Deleted {
			d.Add(digest.Hash(c.Key, c.Value, c.Partition, c.Offset))
		}
	}
	return d.Bytes()
}

// selector is a client's key prefixes; nil selects everything.
type selector struct{ prefixes []string }

func newSelector(prefixes []string) selector {
	var ps []string
	for _, p := range prefixes {
		if p == "" {
			return selector{}
		}
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return selector{prefixes: slices.Compact(ps)}
}

func (s selector) match(key string) bool {
	if len(s.prefixes) == 0 {
		return true
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

func clipValue(v []byte) string {
	if len(v) > 32 {
		return fmt.Sprintf("%q...(%d bytes)", v[:32], len(v))
	}
	return fmt.Sprintf("%q", v)
}

func sameChange(a, b Change) bool {
	return a.Key == b.Key && a.Deleted == b.Deleted && a.Partition == b.Partition && a.Offset == b.Offset &&
		(a.Deleted || bytes.Equal(a.Value, b.Value))
}

// applyToView is what a client's view becomes after o: a snapshot replaces
// it, a delta's changes apply in order; other kinds leave it.
func applyToView(view map[string]Change, o *Obs) map[string]Change {
	switch o.Kind {
	case Snapshot:
		view = make(map[string]Change, len(o.Changes))
		for _, ch := range o.Changes {
			if !ch.Deleted {
				view[ch.Key] = ch
			}
		}
	case Delta:
		for _, ch := range o.Changes {
			if ch.Deleted {
				delete(view, ch.Key)
			} else {
				view[ch.Key] = ch
			}
		}
	}
	return view
}
