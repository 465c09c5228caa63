package history

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/testkit"
)

// Rule names the guarantee a violation breaks.
type Rule int

const (
	// Protocol: the observation itself is malformed (undecodable cursor,
	// snapshot chunks out of order or miscounted, a digest that does not
	// match the snapshot's entries).
	Protocol Rule = iota
	// NeverBackwards (1): every cursor covers the previous one, except a
	// reset snapshot naming another topic.
	NeverBackwards
	// SnapshotExact (2): a snapshot at C holds exactly the selected live
	// entries of the log at C.
	SnapshotExact
	// NoGaps (3): a delta carries exactly the selected state changes of its
	// range, each once, in log order per partition (coalesced: the latest
	// per key).
	NoGaps
	// ProgressExact (4): a progress message skips no selected change.
	ProgressExact
	// Resumable (5): a stream resumed with a cursor continues from it or
	// sends a flagged reset snapshot; a stream without one starts with an
	// initial snapshot; a snapshot on a live stream is flagged reset.
	Resumable
	// Convergent (6): the client's final view is the log's state for its
	// selector at its final cursor.
	Convergent
	// ChangeSetsAtomic (7): every cursor a client observes covers all or
	// none of each change set's records. Checked right after rule 1.
	ChangeSetsAtomic
	// PreconditionsHeld (8): every conditional record's precondition held
	// at its position in the log. A rule of the log itself, checked once
	// before the clients: its violation has Client "" and Record set.
	PreconditionsHeld
)

func (r Rule) String() string {
	switch r {
	case Protocol:
		return "protocol"
	case NeverBackwards:
		return "never backwards"
	case SnapshotExact:
		return "snapshot exact"
	case NoGaps:
		return "no gaps, no duplicates, in order"
	case ProgressExact:
		return "progress skips nothing"
	case Resumable:
		return "resumable"
	case Convergent:
		return "convergent"
	case ChangeSetsAtomic:
		return "change sets atomic"
	case PreconditionsHeld:
		return "preconditions held"
	}
	return fmt.Sprintf("rule(%d)", int(r))
}

// Violation is the first observation of a client that breaks a guarantee,
// or a record of the log that breaks one (PreconditionsHeld: Client is "",
// Index -1, and Record is set).
type Violation struct {
	Client string
	// Index is the observation's index among the client's observations
	// (from 0); for a final-view violation, the last one's.
	Index int
	Kind  Kind
	Rule  Rule
	// Cursor is the observation's cursor; From the cursor its range starts
	// at (the previous cursor, or the resume cursor), when there is one.
	Cursor cursor.Cursor
	From   *cursor.Cursor
	// Addr is the address of the stream it came on, when Reconnect named one.
	Addr string
	// Key, Expected and Got: the entry in question, what the log implies
	// and what the client saw ("" when not about one entry).
	Key      string
	Expected string
	Got      string
	Detail   string
	// Set is the request ID of the change set in question, when there is
	// one (ChangeSetsAtomic; PreconditionsHeld for a record of a set).
	Set string
	// Record is the log record in question for a violation of the log
	// itself (PreconditionsHeld), nil for a client's.
	Record *Change
}

func (v *Violation) Error() string {
	var b strings.Builder
	if v.Record != nil {
		fmt.Fprintf(&b, "history: the log, record %s", v.Record)
	} else {
		fmt.Fprintf(&b, "history: client %q, observation #%d (%s at %s", v.Client, v.Index, v.Kind, fmtCursor(v.Cursor))
		if v.From != nil {
			fmt.Fprintf(&b, ", from %s", fmtCursor(*v.From))
		}
		if v.Addr != "" {
			fmt.Fprintf(&b, ", stream to %s", v.Addr)
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, ": %s: %s", v.Rule, v.Detail)
	if v.Set != "" {
		fmt.Fprintf(&b, "; change set %q", v.Set)
	}
	if v.Key != "" {
		fmt.Fprintf(&b, "; key %q", v.Key)
	}
	if v.Expected != "" || v.Got != "" {
		fmt.Fprintf(&b, ": expected %s, got %s", v.Expected, v.Got)
	}
	return b.String()
}

// fmtCursor renders a cursor readably: a topic ID prefix and the offsets.
func fmtCursor(c cursor.Cursor) string {
	if c.Topic == (cursor.TopicID{}) && len(c.Offsets) == 0 {
		return "<no cursor>"
	}
	return fmt.Sprintf("%.6s%v", c.Topic.String(), c.Offsets)
}

const absent = "absent"

// Check verifies every client's observations against log, the data
// records of topic (as testkit's ReadLog returns them), and returns the
// first violation of the first client (in name order) that has one, as a
// *Violation, or nil. The log's own rules (rule 8) come first, as a
// client named "". Other errors mean the log itself is unusable.
func (r *Recorder) Check(log []testkit.LogRecord, topic cursor.TopicID) error {
	vs, err := r.check(log, topic, true)
	if err != nil {
		return err
	}
	if len(vs) > 0 {
		return vs[0]
	}
	return nil
}

// CheckAll is Check reporting the first violation of every client, after
// the log's first violation of each of its own rules.
func (r *Recorder) CheckAll(log []testkit.LogRecord, topic cursor.TopicID) ([]*Violation, error) {
	return r.check(log, topic, false)
}

func (r *Recorder) check(log []testkit.LogRecord, topic cursor.TopicID, first bool) ([]*Violation, error) {
	clients := r.all()
	recs := make([]clientRecord, len(clients))
	// The topic's partition count is in its cursors: routing (which
	// records a gateway skips as misrouted) depends on it.
	partitions := 0
	note := func(c cursor.Cursor) {
		if c.Topic == topic {
			partitions = max(partitions, len(c.Offsets))
		}
	}
	for i, c := range clients {
		recs[i] = c.snapshot()
		for _, ev := range recs[i].events {
			note(ev.obs.Cursor)
			if ev.rc != nil {
				note(ev.rc.from)
			}
		}
	}
	ix, err := buildIndex(log, topic, partitions)
	if err != nil {
		return nil, err
	}
	var out []*Violation
	for _, check := range logRules {
		if v := check(ix); v != nil {
			out = append(out, v)
			if first {
				return out, nil
			}
		}
	}
	for _, cr := range recs {
		if v := checkClient(ix, cr); v != nil {
			out = append(out, v)
			if first {
				break
			}
		}
	}
	return out, nil
}

// clientCheck walks one client's observations: the protocol (streams,
// message kinds, the view they build, where each range starts) is here;
// what each observation is held to is the rules of rules.go.
type clientCheck struct {
	ix   *logIndex
	cr   clientRecord
	m    *model // the log's state at the range start, moved to each cursor checked
	view map[string]Change
	prev *cursor.Cursor // the last cursor observed

	// The observation at hand, as the walker found it.
	ev           *event
	startsStream bool // the first on its stream
	withCursor   bool // ... on a stream opened with a resume cursor
	onLog        bool // its cursor names the log's topic: its content can be checked

	// Where a violation is: set by the walker, reported by fail.
	i    int
	obs  *Obs
	from *cursor.Cursor
	addr string
}

func (c *clientCheck) fail(rule Rule, key, expected, got, format string, args ...any) *Violation {
	v := &Violation{Client: c.cr.name, Index: c.i, Rule: rule, Key: key, Expected: expected, Got: got, Detail: fmt.Sprintf(format, args...), Addr: c.addr}
	if c.obs != nil {
		v.Kind, v.Cursor = c.obs.Kind, c.obs.Cursor
	}
	if c.from != nil {
		f := c.from.Clone()
		v.From = &f
	}
	return v
}

// checkClient holds one client's history to every rule, in order: per
// stream opened, per observation, then at the end. The first violation is
// the answer.
func checkClient(ix *logIndex, cr clientRecord) *Violation {
	c := &clientCheck{ix: ix, cr: cr, m: newModel(ix, cr.sel), view: map[string]Change{}}
	inStream := false // a stream is open and has delivered something
	for i := range cr.events {
		ev := &cr.events[i]
		c.i, c.obs, c.ev = i, &ev.obs, ev
		if ev.rc != nil {
			c.addr = ev.rc.addr
			if v := c.run(streamRules); v != nil {
				return v
			}
		}
		c.begin(ev, inStream)
		if v := c.run(observationRules); v != nil {
			return v
		}
		c.apply(&ev.obs)
		inStream = true
	}
	c.obs, c.from = nil, nil
	if c.prev == nil {
		return nil
	}
	n := len(cr.events)
	c.i, c.obs = n-1, &cr.events[n-1].obs
	return c.run(endRules)
}

// run holds the history to rules in order and returns the first
// violation. An observation rule is skipped for the messages it is not
// about.
func (c *clientCheck) run(rules []rule) *Violation {
	m := msgOf(c.obs)
	for _, r := range rules {
		if r.on != 0 && r.on&m == 0 || r.onLog && !c.onLog {
			continue
		}
		if v := r.check(c); v != nil {
			return v
		}
	}
	return nil
}

// msgs is a set of message kinds; a coalesced delta is a kind of its own.
type msgs uint8

const (
	snapshots msgs = 1 << iota
	deltas
	coalescedDeltas
	progresses
)

func msgOf(o *Obs) msgs {
	switch o.Kind {
	case Snapshot:
		return snapshots
	case Delta:
		if o.Coalesced {
			return coalescedDeltas
		}
		return deltas
	case Progress:
		return progresses
	}
	return 0
}

// begin finds where the observation's range starts and how its stream
// began. A client whose first stream resumed with a cursor was restored
// from a view saved elsewhere: that view is the log's state there.
func (c *clientCheck) begin(ev *event, inStream bool) {
	from := c.prev
	c.startsStream = ev.rc != nil || !inStream
	c.withCursor = ev.rc != nil && ev.rc.withCursor
	if c.withCursor && c.prev == nil {
		rc := ev.rc.from
		from = &rc
		if rc.Topic == c.ix.topic {
			c.m.seek(rc)
			c.view = c.m.state()
		}
	}
	c.from = from
	c.onLog = ev.obs.Cursor.Topic == c.ix.topic
}

// apply moves the client's view and the model past an observation that
// kept every rule.
func (c *clientCheck) apply(o *Obs) {
	c.view = applyToView(c.view, o)
	if c.onLog {
		c.m.seek(o.Cursor)
	}
	cur := o.Cursor
	c.prev = &cur
}

// sameCursor: a resume cursor that is the last one observed.
func sameCursor(a cursor.Cursor, b *cursor.Cursor) bool {
	return a.Topic == b.Topic && a.Equal(*b)
}

func backwardsDetail(from, to cursor.Cursor) string {
	for p, off := range from.Offsets {
		if to.Offset(int32(p)) < off {
			return fmt.Sprintf("the cursor goes backwards in partition %d (%d after %d)", p, to.Offset(int32(p)), off)
		}
	}
	return "the cursor goes backwards"
}

// diff compares a view with the expected state, key by key in key order.
func diff(want, got map[string]Change) (key, expected, gotS string, ok bool) {
	keys := slices.Collect(maps.Keys(want))
	for k := range got {
		if _, in := want[k]; !in {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		w, win := want[k]
		g, gin := got[k]
		if gin && g.Deleted {
			gin = false
		}
		switch {
		case win && !gin:
			return k, w.String(), absent, false
		case !win && gin:
			return k, absent, g.String(), false
		case win && gin && !sameChange(w, g):
			return k, w.String(), g.String(), false
		}
	}
	return "", "", "", true
}

// rangeParts is the number of partitions a range [from, to) can touch.
func (c *clientCheck) rangeParts(from, to cursor.Cursor) int {
	return min(len(c.ix.parts), max(len(from.Offsets), len(to.Offsets)))
}

// lookup classifies a received change against the log; "" when it names
// an applied, selected log record with the same content.
func (c *clientCheck) lookup(ch Change) (*logRec, int32, string, string) {
	r, ri, ok := c.ix.find(ch.Partition, ch.Offset)
	if !ok {
		hint := ""
		if ch.Partition >= 0 && ch.Offset >= c.ix.endCursor().Offset(ch.Partition) {
			hint = " (it is past the log's end: was the log read before the client's last observation?)"
		}
		return nil, -1, "no record at this version", "the change names a record the log does not have" + hint
	}
	rc := r.asChange()
	if !sameChange(rc, ch) {
		return r, ri, rc.String(), "the change differs from the log's record at its version"
	}
	if !c.cr.sel.match(ch.Key) {
		return r, ri, "nothing", fmt.Sprintf("the key is not selected by %v", c.cr.sel.prefixes)
	}
	if r.skip != "" {
		return r, ri, "nothing", "a gateway must skip this record (" + r.skip + ")"
	}
	return r, ri, "", ""
}
