package history

import (
	"bytes"
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
	}
	return fmt.Sprintf("rule(%d)", int(r))
}

// Violation is the first observation of a client that breaks a guarantee.
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
}

func (v *Violation) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "history: client %q, observation #%d (%s at %s", v.Client, v.Index, v.Kind, fmtCursor(v.Cursor))
	if v.From != nil {
		fmt.Fprintf(&b, ", from %s", fmtCursor(*v.From))
	}
	if v.Addr != "" {
		fmt.Fprintf(&b, ", stream to %s", v.Addr)
	}
	fmt.Fprintf(&b, "): %s: %s", v.Rule, v.Detail)
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
// *Violation, or nil. Other errors mean the log itself is unusable.
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

// CheckAll is Check reporting the first violation of every client.
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

// clientCheck walks one client's observations.
type clientCheck struct {
	ix   *logIndex
	cr   clientRecord
	m    *model
	view map[string]Change
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

func checkClient(ix *logIndex, cr clientRecord) *Violation {
	c := &clientCheck{ix: ix, cr: cr, m: newModel(ix, cr.sel), view: map[string]Change{}}
	var prev *cursor.Cursor // the last cursor observed
	inStream := false       // a stream is open and has delivered something
	for i := range cr.events {
		ev := &cr.events[i]
		o := &ev.obs
		c.i, c.obs = i, o
		from := prev // where this observation's range starts
		startsStream := ev.rc != nil || !inStream
		withCursor := ev.rc != nil && ev.rc.withCursor
		if ev.rc != nil {
			c.addr = ev.rc.addr
			if ev.rc.bad != "" {
				return c.fail(Protocol, "", "", "", "%s", ev.rc.bad)
			}
		}
		if withCursor {
			rc := ev.rc.from
			if prev != nil && !(rc.Topic == prev.Topic && rc.Equal(*prev)) {
				c.from = prev
				return c.fail(Resumable, "", "resume from "+fmtCursor(*prev), "resume from "+fmtCursor(rc),
					"the stream was resumed from a cursor other than the last one observed")
			}
			if prev == nil {
				// Resumed from a view saved elsewhere: it holds the log's
				// state at the resume cursor.
				from = &rc
				if rc.Topic == ix.topic {
					c.m.seek(rc)
					c.view = c.m.state()
				}
			}
		}
		c.from = from
		if ev.bad != "" {
			return c.fail(Protocol, "", "", "", "%s", ev.bad)
		}
		if o.Kind < Snapshot || o.Kind > Progress {
			return c.fail(Protocol, "", "", "", "unknown observation kind %d", int(o.Kind))
		}

		// 5: how a stream starts; a snapshot on a live stream is a reset.
		switch {
		case startsStream && !withCursor && o.Kind != Snapshot:
			return c.fail(Resumable, "", "an initial snapshot", o.Kind.String(), "a stream opened without a cursor must start with a snapshot")
		case startsStream && !withCursor && o.Reset:
			return c.fail(Resumable, "", "reset=false", "reset=true (reason "+o.Reason+")", "the first snapshot of a stream opened without a cursor must be an initial one")
		case o.Kind == Snapshot && !o.Reset && withCursor:
			return c.fail(Resumable, "", "reset=true", "reset=false (reason "+o.Reason+")",
				"a snapshot answering a resume cursor must be flagged reset: never a silent jump")
		case o.Kind == Snapshot && !o.Reset && !startsStream:
			return c.fail(Resumable, "", "reset=true", "reset=false (reason "+o.Reason+")",
				"a snapshot on a stream that already delivered state must be flagged reset")
		}

		// 1: never backwards.
		if from != nil && !o.Cursor.Covers(*from) {
			otherTopic := o.Cursor.Topic != from.Topic
			if !(o.Kind == Snapshot && o.Reset && otherTopic) {
				if otherTopic {
					return c.fail(NeverBackwards, "", "topic "+from.Topic.String(), "topic "+o.Cursor.Topic.String(),
						"the cursor names another topic without a reset snapshot")
				}
				return c.fail(NeverBackwards, "", "a cursor covering "+fmtCursor(*from), fmtCursor(o.Cursor), "%s", backwardsDetail(*from, o.Cursor))
			}
		}

		if o.Kind == Snapshot && o.Digest != nil {
			if got := digestOf(o.Changes); !bytes.Equal(got, o.Digest) {
				return c.fail(Protocol, "", fmt.Sprintf("digest %x", got), fmt.Sprintf("digest %x", o.Digest),
					"the snapshot's digest does not match its %d entries", len(o.Changes))
			}
		}

		// 2-4: content, against the log when the cursor is of its topic.
		checked := o.Cursor.Topic == ix.topic
		var v *Violation
		switch o.Kind {
		case Snapshot:
			if checked {
				c.m.seek(o.Cursor)
				v = c.snapshot(o)
			}
			c.view = make(map[string]Change, len(o.Changes))
			for _, ch := range o.Changes {
				if !ch.Deleted {
					c.view[ch.Key] = ch
				}
			}
		case Delta:
			if checked {
				if o.Coalesced {
					v = c.coalesced(o, *from)
				} else {
					v = c.delta(o, *from)
				}
			}
			for _, ch := range o.Changes {
				if ch.Deleted {
					delete(c.view, ch.Key)
				} else {
					c.view[ch.Key] = ch
				}
			}
		case Progress:
			if checked {
				v = c.progress(o, *from)
			}
		}
		if v != nil {
			return v
		}
		cur := o.Cursor
		prev, inStream = &cur, true
	}
	c.obs, c.from = nil, nil
	if t := cr.trailing; t != nil && t.withCursor && prev != nil && !(t.from.Topic == prev.Topic && t.from.Equal(*prev)) {
		c.i, c.addr, c.from = len(cr.events), t.addr, prev
		return c.fail(Resumable, "", "resume from "+fmtCursor(*prev), "resume from "+fmtCursor(t.from),
			"the last stream was resumed from a cursor other than the last one observed (no observation followed)")
	}
	if prev == nil {
		return nil
	}
	n := len(cr.events)
	c.i, c.obs = n-1, &cr.events[n-1].obs
	// 6: convergent.
	if prev.Topic != ix.topic {
		return c.fail(Convergent, "", "a cursor of topic "+ix.topic.String(), "topic "+prev.Topic.String(),
			"the client's final cursor names another topic than the log's")
	}
	c.m.seek(*prev)
	what := "the log's state at the client's final cursor"
	if prev.Covers(ix.endCursor()) {
		what = "the log's final state (the client's cursor covers the log's end)"
	}
	if key, want, got, ok := diff(c.m.state(), c.view); !ok {
		return c.fail(Convergent, key, want, got, "the client's view (replayed from its observations) differs from %s", what)
	}
	if cr.hasFinal {
		if key, want, got, ok := diff(c.m.state(), cr.final); !ok {
			return c.fail(Convergent, key, want, got, "the client's own final view differs from %s", what)
		}
	}
	return nil
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

// snapshot checks a snapshot against the model, which is at its cursor.
func (c *clientCheck) snapshot(o *Obs) *Violation {
	seen := make(map[string]bool, len(o.Changes))
	got := make(map[string]Change, len(o.Changes))
	for _, ch := range o.Changes {
		if seen[ch.Key] {
			return c.fail(SnapshotExact, ch.Key, "the key once", "it twice", "a snapshot holds a key twice")
		}
		seen[ch.Key] = true
		if ch.Deleted {
			return c.fail(SnapshotExact, ch.Key, "only live entries", ch.String(), "a snapshot holds a deletion")
		}
		if !c.cr.sel.match(ch.Key) {
			return c.fail(SnapshotExact, ch.Key, absent, ch.String(), "a snapshot holds a key its selector %v does not select", c.cr.sel.prefixes)
		}
		got[ch.Key] = ch
	}
	if key, want, g, ok := diff(c.m.state(), got); !ok {
		var detail string
		switch {
		case g == absent:
			detail = "the snapshot misses a live key"
		case want == absent:
			detail = "the snapshot holds a key that is not live at its cursor"
		default:
			detail = "the snapshot holds another value or version than the log's latest"
		}
		return c.fail(SnapshotExact, key, want, g, "%s", detail)
	}
	return nil
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

// delta checks a non-coalesced delta over [from, o.Cursor); the model is
// at from and moves to o.Cursor.
func (c *clientCheck) delta(o *Obs, from cursor.Cursor) *Violation {
	to := o.Cursor
	np := c.rangeParts(from, to)
	expect := make([][]int32, np) // selected state changes per partition
	for p := range np {
		for _, ri := range c.ix.span(int32(p), from.Offset(int32(p)), to.Offset(int32(p))) {
			r := &c.ix.recs[ri]
			if r.skip == "" && r.change && c.cr.sel.match(r.Key) {
				expect[p] = append(expect[p], ri)
			}
		}
	}
	next := make([]int, np)
	for j, ch := range o.Changes {
		r, ri, want, why := c.lookup(ch)
		if why != "" {
			return c.fail(NoGaps, ch.Key, want, ch.String(), "%s", why)
		}
		p := ch.Partition
		switch {
		case ch.Offset < from.Offset(p):
			return c.fail(NoGaps, ch.Key, "changes at or after offset "+fmt.Sprint(from.Offset(p))+" of partition "+fmt.Sprint(p), ch.String(),
				"duplicate: the previous cursor already covers this change")
		case ch.Offset >= to.Offset(p):
			return c.fail(NoGaps, ch.Key, "changes before offset "+fmt.Sprint(to.Offset(p))+" of partition "+fmt.Sprint(p), ch.String(),
				"the change is past the delta's own cursor")
		case !r.change:
			return c.fail(NoGaps, ch.Key, "nothing", ch.String(), "a delete of a key that was not live changes nothing and must not be sent")
		}
		n := next[p]
		if n < len(expect[p]) && expect[p][n] == ri {
			next[p]++
			continue
		}
		if n >= len(expect[p]) || ch.Offset < c.ix.recs[expect[p][n]].Offset {
			return c.fail(NoGaps, ch.Key, "each change once", ch.String()+" again", "duplicate: the delta carries this change twice")
		}
		missing := &c.ix.recs[expect[p][n]]
		for _, later := range o.Changes[j+1:] {
			if later.Partition == p && later.Offset == missing.Offset {
				return c.fail(NoGaps, missing.Key, missing.String()+" first", ch.String()+" first",
					"out of order: partition %d's changes must arrive in log order", p)
			}
		}
		return c.fail(NoGaps, missing.Key, missing.String(), ch.String(), "gap: the delta skips a change")
	}
	for p := range np {
		if n := next[p]; n < len(expect[p]) {
			missing := &c.ix.recs[expect[p][n]]
			return c.fail(NoGaps, missing.Key, missing.String(), "no such change in the delta", "gap: the delta skips a change")
		}
	}
	c.m.seek(to)
	return nil
}

// touch is what happened to one key in a range.
type touch struct {
	lastChange int64 // offset of the key's last state change in the range, -1 if none
	before     int32 // record index live at the range start, -1 absent
}

// coalesced checks a coalesced delta over [from, o.Cursor): per key that
// changed, exactly its state at o.Cursor; a delete of a key absent at both
// ends may be sent or not (see the package doc).
func (c *clientCheck) coalesced(o *Obs, from cursor.Cursor) *Violation {
	to := o.Cursor
	touched := map[string]*touch{}
	for p := range c.rangeParts(from, to) {
		for _, ri := range c.ix.span(int32(p), from.Offset(int32(p)), to.Offset(int32(p))) {
			r := &c.ix.recs[ri]
			if r.skip != "" || !c.cr.sel.match(r.Key) {
				continue
			}
			t := touched[r.Key]
			if t == nil {
				t = &touch{lastChange: -1, before: c.m.get(r.Key)}
				touched[r.Key] = t
			}
			if r.change {
				t.lastChange = r.Offset
			}
		}
	}
	c.m.seek(to)
	seen := map[string]bool{}
	for _, ch := range o.Changes {
		if seen[ch.Key] {
			return c.fail(NoGaps, ch.Key, "one change per key", ch.String()+" again", "a coalesced delta carries a key twice")
		}
		seen[ch.Key] = true
		r, _, want, why := c.lookup(ch)
		if why != "" {
			return c.fail(NoGaps, ch.Key, want, ch.String(), "%s", why)
		}
		t := touched[ch.Key]
		if t == nil || ch.Offset < from.Offset(ch.Partition) || ch.Offset >= to.Offset(ch.Partition) {
			return c.fail(NoGaps, ch.Key, "nothing (no record of the key in the delta's range)", ch.String(),
				"a coalesced delta carries a change outside its range")
		}
		after := c.m.get(ch.Key)
		if after >= 0 {
			if rec := &c.ix.recs[after]; !ch.Deleted && rec.Offset == ch.Offset && rec.Partition == ch.Partition {
				continue
			}
			return c.fail(NoGaps, ch.Key, c.ix.recs[after].String(), ch.String(), "a coalesced delta must carry the key's latest value")
		}
		if !ch.Deleted {
			return c.fail(NoGaps, ch.Key, "a delete", ch.String(), "the key is absent at the delta's cursor")
		}
		if r.Offset < t.lastChange {
			return c.fail(NoGaps, ch.Key, fmt.Sprintf("a tombstone at or after offset %d", t.lastChange), ch.String(),
				"the delete is older than the key's last change in the range")
		}
	}
	keys := slices.Sorted(maps.Keys(touched))
	for _, k := range keys {
		t := touched[k]
		after := c.m.get(k)
		if after == t.before || seen[k] {
			continue
		}
		want := "a delete of the key"
		if after >= 0 {
			want = c.ix.recs[after].String()
		}
		return c.fail(NoGaps, k, want, "no change for the key", "gap: the coalesced delta misses a key that changed")
	}
	return nil
}

// progress checks that [from, o.Cursor) holds no selected state change.
func (c *clientCheck) progress(o *Obs, from cursor.Cursor) *Violation {
	to := o.Cursor
	for p := range c.rangeParts(from, to) {
		for _, ri := range c.ix.span(int32(p), from.Offset(int32(p)), to.Offset(int32(p))) {
			r := &c.ix.recs[ri]
			if r.skip == "" && r.change && c.cr.sel.match(r.Key) {
				return c.fail(ProgressExact, r.Key, r.String(), "a progress message moving past it",
					"the progress message skips a change the client never received")
			}
		}
	}
	c.m.seek(to)
	return nil
}
