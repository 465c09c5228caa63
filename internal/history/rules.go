package history

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/store"
)

// The rules, one function each, whose doc comment names the guarantee it
// checks: its section of docs/guarantees.md and its number among the
// package doc's rules (several rules may check one guarantee). The walker,
// checkClient, holds a history to them in the order of these tables and
// reports the first violation, so the order is part of the behaviour: a
// malformed message before its content, a stream's start before its
// cursor, the cursor before the entries.
//
// A rule reads the observation at hand from the walker (c.obs, c.ev,
// c.from: where its range starts) and returns nil when the history keeps
// its guarantee. It may rely on the rules before it in its table (a
// change's record exists once changeInLog passed; a delta's range has a
// start once the stream's start was checked). The model is at the range
// start when a rule runs; a rule may move it to the observation's cursor,
// nowhere else.
//
// To add a rule: write the function, put it in its table, and give it a
// broken history it catches (TestEveryRuleCatchesSomething).

// A rule holds a client's history to one guarantee at one point of the
// walk.
type rule struct {
	// on: the messages an observation rule is about (none named: every
	// observation); onLog: only those whose cursor names the log's topic,
	// whose content the log can judge.
	on    msgs
	onLog bool
	check func(c *clientCheck) *Violation
}

// streamRules: a new stream, before its first observation.
var streamRules = []rule{
	{check: resumeCursorDecodes},
	{check: resumedFromLast},
}

// observationRules: every observation.
var observationRules = []rule{
	{check: wellFormed},
	{check: initialSnapshotFirst},
	{on: snapshots, check: resetFlagged},
	{check: neverBackwards},
	{onLog: true, check: changeSetsWhole},
	{on: snapshots, check: digestMatches},
	{on: snapshots, onLog: true, check: snapshotEntries},
	{on: snapshots, onLog: true, check: snapshotMatchesLog},
	{on: deltas, onLog: true, check: deltaExact},
	{on: coalescedDeltas, onLog: true, check: coalescedExact},
	{on: progresses, onLog: true, check: progressSkipsNothing},
}

// logRules: the log itself, once, before any client (their violations
// name no client).
var logRules = []func(ix *logIndex) *Violation{
	preconditionsHeld,
}

// endRules: the client's whole history, after its last observation.
var endRules = []rule{
	{check: trailingResumedFromLast},
	{check: finalOnLogTopic},
	{check: replayedViewConverges},
	{check: ownViewConverges},
}

// resumeCursorDecodes (protocol): the cursor a stream was resumed with
// could be decoded.
func resumeCursorDecodes(c *clientCheck) *Violation {
	if bad := c.ev.rc.bad; bad != "" {
		return c.fail(Protocol, "", "", "", "%s", bad)
	}
	return nil
}

// resumedFromLast (Resumable on any gateway, rule 5): a stream is resumed
// from the last cursor the client observed, the one its view is at.
func resumedFromLast(c *clientCheck) *Violation {
	rc := c.ev.rc
	if !rc.withCursor || c.prev == nil || sameCursor(rc.from, c.prev) {
		return nil
	}
	c.from = c.prev
	return c.fail(Resumable, "", "resume from "+fmtCursor(*c.prev), "resume from "+fmtCursor(rc.from),
		"the stream was resumed from a cursor other than the last one observed")
}

// wellFormed (protocol): the adapter found nothing malformed in the
// messages (an undecodable cursor, snapshot chunks out of key order,
// miscounted or left open), and the observation is of a known kind.
func wellFormed(c *clientCheck) *Violation {
	if c.ev.bad != "" {
		return c.fail(Protocol, "", "", "", "%s", c.ev.bad)
	}
	if k := c.obs.Kind; k < Snapshot || k > Progress {
		return c.fail(Protocol, "", "", "", "unknown observation kind %d", int(k))
	}
	return nil
}

// initialSnapshotFirst (Never a silent jump, rule 5): a stream opened
// without a cursor starts with a snapshot, and that snapshot is an
// initial one, not flagged reset.
func initialSnapshotFirst(c *clientCheck) *Violation {
	o := c.obs
	switch {
	case !c.startsStream || c.withCursor:
		return nil
	case o.Kind != Snapshot:
		return c.fail(Resumable, "", "an initial snapshot", o.Kind.String(), "a stream opened without a cursor must start with a snapshot")
	case o.Reset:
		return c.fail(Resumable, "", "reset=false", "reset=true (reason "+o.Reason+")", "the first snapshot of a stream opened without a cursor must be an initial one")
	}
	return nil
}

// resetFlagged (Never a silent jump, rule 5): every other snapshot, one
// answering a resume cursor or one on a stream that already delivered
// state, is flagged reset.
func resetFlagged(c *clientCheck) *Violation {
	o := c.obs
	switch {
	case o.Reset:
		return nil
	case c.withCursor:
		return c.fail(Resumable, "", "reset=true", "reset=false (reason "+o.Reason+")",
			"a snapshot answering a resume cursor must be flagged reset: never a silent jump")
	case !c.startsStream:
		return c.fail(Resumable, "", "reset=true", "reset=false (reason "+o.Reason+")",
			"a snapshot on a stream that already delivered state must be flagged reset")
	}
	return nil
}

// neverBackwards (Never backwards, rule 1): the cursor covers the one its
// range starts at; only a snapshot flagged reset may name another topic.
func neverBackwards(c *clientCheck) *Violation {
	from, o := c.from, c.obs
	if from == nil || o.Cursor.Covers(*from) {
		return nil
	}
	switch {
	case o.Cursor.Topic == from.Topic:
		return c.fail(NeverBackwards, "", "a cursor covering "+fmtCursor(*from), fmtCursor(o.Cursor), "%s", backwardsDetail(*from, o.Cursor))
	case o.Kind == Snapshot && o.Reset:
		return nil
	}
	return c.fail(NeverBackwards, "", "topic "+from.Topic.String(), "topic "+o.Cursor.Topic.String(),
		"the cursor names another topic without a reset snapshot")
}

// changeSetsWhole (Change sets are atomic, rule 7): the cursor covers all
// or none of each change set's records present in the log (covers: C[p] >
// the record's offset in its partition p). A set whose range start was
// checked already (the previous cursor, of the log's topic) can only be
// cut now if a record of it is inside the range; any other start (none,
// a resume cursor, another topic) checks every set.
func changeSetsWhole(c *clientCheck) *Violation {
	to := c.obs.Cursor
	if c.prev == nil || c.from != c.prev || c.prev.Topic != c.ix.topic {
		for si := range c.ix.sets {
			if v := c.setWhole(int32(si), to); v != nil {
				return v
			}
		}
		return nil
	}
	from := *c.from
	checked := map[int32]bool{}
	for p := range c.rangeParts(from, to) {
		for _, ri := range c.ix.span(int32(p), from.Offset(int32(p)), to.Offset(int32(p))) {
			si := c.ix.recs[ri].set
			if si < 0 || checked[si] {
				continue
			}
			checked[si] = true
			if v := c.setWhole(si, to); v != nil {
				return v
			}
		}
	}
	return nil
}

// setWhole reports change set si when to covers some of its records and
// not others.
func (c *clientCheck) setWhole(si int32, to cursor.Cursor) *Violation {
	s := &c.ix.sets[si]
	if s.ambiguous {
		return nil
	}
	var in, out []int32
	for _, ri := range s.recs {
		if r := &c.ix.recs[ri]; r.Offset < to.Offset(r.Partition) {
			in = append(in, ri)
		} else {
			out = append(out, ri)
		}
	}
	if len(in) == 0 || len(out) == 0 {
		return nil
	}
	present := ""
	if len(s.recs) < s.count {
		present = fmt.Sprintf(" (%d of its %d present in the log)", len(s.recs), s.count)
	}
	v := c.fail(ChangeSetsAtomic, "", fmt.Sprintf("all or none of its %d records%s", len(s.recs), present),
		fmt.Sprintf("covered %s; not covered %s", c.setRecs(in), c.setRecs(out)),
		"the cursor cuts a change set: it covers %d of its records and not the other %d", len(in), len(out))
	v.Set = s.id
	return v
}

// setRecs lists records of a change set with their operation index,
// clipped.
func (c *clientCheck) setRecs(ris []int32) string {
	const most = 4
	var b bytes.Buffer
	for i, ri := range ris {
		if i == most {
			fmt.Fprintf(&b, " and %d more", len(ris)-most)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		r := &c.ix.recs[ri]
		fmt.Fprintf(&b, "#%d %s", r.op, r.String())
	}
	return b.String()
}

// digestMatches (Convergent, and verifiable with the digest; a protocol
// violation): the digest a snapshot carries is its entries' digest.
func digestMatches(c *clientCheck) *Violation {
	o := c.obs
	if o.Digest == nil {
		return nil
	}
	if got := digestOf(o.Changes); !bytes.Equal(got, o.Digest) {
		return c.fail(Protocol, "", fmt.Sprintf("digest %x", got), fmt.Sprintf("digest %x", o.Digest),
			"the snapshot's digest does not match its %d entries", len(o.Changes))
	}
	return nil
}

// snapshotEntries (Snapshots are exact and consistent, rule 2): a
// snapshot holds each key once, live entries only, and only keys its
// selector selects.
func snapshotEntries(c *clientCheck) *Violation {
	seen := make(map[string]bool, len(c.obs.Changes))
	for _, ch := range c.obs.Changes {
		switch {
		case seen[ch.Key]:
			return c.fail(SnapshotExact, ch.Key, "the key once", "it twice", "a snapshot holds a key twice")
		case ch.Deleted:
			return c.fail(SnapshotExact, ch.Key, "only live entries", ch.String(), "a snapshot holds a deletion")
		case !c.cr.sel.match(ch.Key):
			return c.fail(SnapshotExact, ch.Key, absent, ch.String(), "a snapshot holds a key its selector %v does not select", c.cr.sel.prefixes)
		}
		seen[ch.Key] = true
	}
	return nil
}

// snapshotMatchesLog (Snapshots are exact and consistent, rule 2): a
// snapshot at C holds exactly the selected live entries of the log at C,
// with their values and versions.
func snapshotMatchesLog(c *clientCheck) *Violation {
	c.m.seek(c.obs.Cursor)
	got := make(map[string]Change, len(c.obs.Changes))
	for _, ch := range c.obs.Changes {
		got[ch.Key] = ch
	}
	key, want, g, ok := diff(c.m.state(), got)
	switch {
	case ok:
		return nil
	case g == absent:
		return c.fail(SnapshotExact, key, want, g, "the snapshot misses a live key")
	case want == absent:
		return c.fail(SnapshotExact, key, want, g, "the snapshot holds a key that is not live at its cursor")
	}
	return c.fail(SnapshotExact, key, want, g, "the snapshot holds another value or version than the log's latest")
}

// deltaExact (No gaps, no duplicates; Ordered per partition; Atomic per
// delta; rule 3): a delta from A to B carries exactly the selected state
// changes with A[p] <= offset < B[p], each once, in log order within each
// partition: every change keeps deltaChangeRules, in order, and then
// nothing is missing.
func deltaExact(c *clientCheck) *Violation {
	d := c.newRange()
	d.expectChanges()
	if v := d.eachChange(deltaChangeRules, d.arrived); v != nil {
		return v
	}
	return nothingMissing(d)
}

// coalescedExact (Slow readers are coalesced, then reset; rule 3): a
// coalesced delta from A to B carries, per selected key whose state at B
// differs from its state at A, exactly one change, the key's state at B:
// every change keeps coalescedChangeRules, in order, and then no key that
// changed is missing. A delete of a key absent at both ends may be sent
// or not (see the package doc).
func coalescedExact(c *clientCheck) *Violation {
	d := c.newRange()
	d.touchKeys()
	c.m.seek(d.to)
	if v := d.eachChange(coalescedChangeRules, d.carried); v != nil {
		return v
	}
	return noKeyMissed(d)
}

// progressSkipsNothing (No gaps, no duplicates, rule 4): a progress
// message from A to B means there was no selected state change in
// [A, B).
func progressSkipsNothing(c *clientCheck) *Violation {
	from, to := *c.from, c.obs.Cursor
	for p := range c.rangeParts(from, to) {
		for _, ri := range c.ix.span(int32(p), from.Offset(int32(p)), to.Offset(int32(p))) {
			r := &c.ix.recs[ri]
			if r.skip == "" && r.change && c.cr.sel.match(r.Key) {
				return c.fail(ProgressExact, r.Key, r.String(), "a progress message moving past it",
					"the progress message skips a change the client never received")
			}
		}
	}
	return nil
}

// trailingResumedFromLast (Resumable on any gateway, rule 5): a last
// stream that delivered nothing was resumed from the last cursor too. Its
// violation is about no observation: the index is one past the last.
func trailingResumedFromLast(c *clientCheck) *Violation {
	t := c.cr.trailing
	if t == nil || !t.withCursor || sameCursor(t.from, c.prev) {
		return nil
	}
	c.i, c.obs, c.addr, c.from = len(c.cr.events), nil, t.addr, c.prev
	return c.fail(Resumable, "", "resume from "+fmtCursor(*c.prev), "resume from "+fmtCursor(t.from),
		"the last stream was resumed from a cursor other than the last one observed (no observation followed)")
}

// finalOnLogTopic (Convergent, rule 6): a client ends on the log's topic.
func finalOnLogTopic(c *clientCheck) *Violation {
	if c.prev.Topic != c.ix.topic {
		return c.fail(Convergent, "", "a cursor of topic "+c.ix.topic.String(), "topic "+c.prev.Topic.String(),
			"the client's final cursor names another topic than the log's")
	}
	return nil
}

// replayedViewConverges (Convergent, rule 6): the client's view, replayed
// from its observations, is the log's state for its selector at its final
// cursor.
func replayedViewConverges(c *clientCheck) *Violation {
	state, what := c.finalState()
	if key, want, got, ok := diff(state, c.view); !ok {
		return c.fail(Convergent, key, want, got, "the client's view (replayed from its observations) differs from %s", what)
	}
	return nil
}

// ownViewConverges (Convergent, rule 6): so is the view the client itself
// reported through Final.
func ownViewConverges(c *clientCheck) *Violation {
	if !c.cr.hasFinal {
		return nil
	}
	state, what := c.finalState()
	if key, want, got, ok := diff(state, c.cr.final); !ok {
		return c.fail(Convergent, key, want, got, "the client's own final view differs from %s", what)
	}
	return nil
}

// finalState is the log's state at the client's final cursor, and how to
// name it.
func (c *clientCheck) finalState() (map[string]Change, string) {
	c.m.seek(*c.prev)
	if c.prev.Covers(c.ix.endCursor()) {
		return c.m.state(), "the log's final state (the client's cursor covers the log's end)"
	}
	return c.m.state(), "the log's state at the client's final cursor"
}

// rangeCheck holds a delta over [from, to) to its rules, change by
// change.
type rangeCheck struct {
	*clientCheck
	from, to cursor.Cursor
	parts    int // the partitions the range can touch
	// A plain delta: the selected state changes of each partition's range,
	// and how many of them have arrived.
	expect [][]int32
	next   []int
	// A coalesced delta: the selected keys the range touched, and the keys
	// the delta carried.
	touched map[string]*touch
	seen    map[string]bool

	// The change at hand, its index in the delta, and the log's record at
	// its version with lookup's verdict (why is "" when the change is that
	// of an applied, selected record).
	j         int
	ch        Change
	rec       *logRec
	ri        int32
	want, why string
}

// touch is what happened to one key in a range.
type touch struct {
	lastChange int64 // offset of the key's last state change in the range, -1 if none
	before     int32 // record index live at the range start, -1 absent
}

func (c *clientCheck) newRange() *rangeCheck {
	d := &rangeCheck{clientCheck: c, from: *c.from, to: c.obs.Cursor, touched: map[string]*touch{}, seen: map[string]bool{}}
	d.parts = c.rangeParts(d.from, d.to)
	d.expect, d.next = make([][]int32, d.parts), make([]int, d.parts)
	return d
}

// expectChanges finds, per partition, the selected state changes of the
// range: what a plain delta must carry.
func (d *rangeCheck) expectChanges() {
	for p := range d.parts {
		for _, ri := range d.ix.span(int32(p), d.from.Offset(int32(p)), d.to.Offset(int32(p))) {
			r := &d.ix.recs[ri]
			if r.skip == "" && r.change && d.cr.sel.match(r.Key) {
				d.expect[p] = append(d.expect[p], ri)
			}
		}
	}
}

// touchKeys finds the selected keys the range touches, with their state
// at its start (the model is there) and their last state change.
func (d *rangeCheck) touchKeys() {
	for p := range d.parts {
		for _, ri := range d.ix.span(int32(p), d.from.Offset(int32(p)), d.to.Offset(int32(p))) {
			r := &d.ix.recs[ri]
			if r.skip != "" || !d.cr.sel.match(r.Key) {
				continue
			}
			t := d.touched[r.Key]
			if t == nil {
				t = &touch{lastChange: -1, before: d.m.get(r.Key)}
				d.touched[r.Key] = t
			}
			if r.change {
				t.lastChange = r.Offset
			}
		}
	}
}

// eachChange holds the delta's changes to rules, in order, one change at
// a time; kept records a change that kept them all.
func (d *rangeCheck) eachChange(rules []func(d *rangeCheck) *Violation, kept func()) *Violation {
	for j := range d.obs.Changes {
		d.at(j)
		for _, check := range rules {
			if v := check(d); v != nil {
				return v
			}
		}
		kept()
	}
	return nil
}

// arrived: the change was the one expected next in its partition.
func (d *rangeCheck) arrived() { d.next[d.ch.Partition]++ }

// carried: the coalesced delta carried the change's key.
func (d *rangeCheck) carried() { d.seen[d.ch.Key] = true }

// at makes the delta's change j the one at hand.
func (d *rangeCheck) at(j int) {
	d.j, d.ch = j, d.obs.Changes[j]
	d.rec, d.ri, d.want, d.why = d.lookup(d.ch)
}

// expected is the record index of partition p's next expected change, or
// -1 when all have arrived.
func (d *rangeCheck) expected(p int32) int32 {
	if n := d.next[p]; n < len(d.expect[p]) {
		return d.expect[p][n]
	}
	return -1
}

// deltaChangeRules: each change of a plain delta, in order.
var deltaChangeRules = []func(d *rangeCheck) *Violation{
	changeInLog,
	notCoveredBefore,
	withinCursor,
	isStateChange,
	notTwice,
	inLogOrder,
	noGap,
}

// coalescedChangeRules: each change of a coalesced delta, in order.
var coalescedChangeRules = []func(d *rangeCheck) *Violation{
	oncePerKey,
	changeInLog,
	inRange,
	latestValue,
	deleteWhenAbsent,
	deleteNotStale,
}

// changeInLog (No gaps, no duplicates, rule 3): a change is the record of
// the log at its version, with its content, of a selected key, and one a
// gateway applies.
func changeInLog(d *rangeCheck) *Violation {
	if d.why != "" {
		return d.fail(NoGaps, d.ch.Key, d.want, d.ch.String(), "%s", d.why)
	}
	return nil
}

// notCoveredBefore (No gaps, no duplicates, rule 3): a change is not one
// the range's start cursor already covers.
func notCoveredBefore(d *rangeCheck) *Violation {
	p := d.ch.Partition
	if d.ch.Offset < d.from.Offset(p) {
		return d.fail(NoGaps, d.ch.Key, "changes at or after offset "+fmt.Sprint(d.from.Offset(p))+" of partition "+fmt.Sprint(p), d.ch.String(),
			"duplicate: the previous cursor already covers this change")
	}
	return nil
}

// withinCursor (Atomic per delta, rule 3): a change is below the delta's
// own cursor.
func withinCursor(d *rangeCheck) *Violation {
	p := d.ch.Partition
	if d.ch.Offset >= d.to.Offset(p) {
		return d.fail(NoGaps, d.ch.Key, "changes before offset "+fmt.Sprint(d.to.Offset(p))+" of partition "+fmt.Sprint(p), d.ch.String(),
			"the change is past the delta's own cursor")
	}
	return nil
}

// isStateChange (No gaps, no duplicates; Terms: Change; rule 3): a plain
// delta carries state changes only: a delete of a key that was not live
// is none.
func isStateChange(d *rangeCheck) *Violation {
	if !d.rec.change {
		return d.fail(NoGaps, d.ch.Key, "nothing", d.ch.String(), "a delete of a key that was not live changes nothing and must not be sent")
	}
	return nil
}

// notTwice (No gaps, no duplicates, rule 3): a change older than the one
// expected next in its partition, or after all of them, arrived already.
func notTwice(d *rangeCheck) *Violation {
	exp := d.expected(d.ch.Partition)
	if exp == d.ri || exp >= 0 && d.ch.Offset >= d.ix.recs[exp].Offset {
		return nil
	}
	return d.fail(NoGaps, d.ch.Key, "each change once", d.ch.String()+" again", "duplicate: the delta carries this change twice")
}

// inLogOrder (Ordered per partition, hence per key; rule 3): the change
// expected next in a partition does not come after a later one.
func inLogOrder(d *rangeCheck) *Violation {
	p := d.ch.Partition
	exp := d.expected(p)
	if exp == d.ri || exp < 0 {
		return nil
	}
	missing := &d.ix.recs[exp]
	for _, later := range d.obs.Changes[d.j+1:] {
		if later.Partition == p && later.Offset == missing.Offset {
			return d.fail(NoGaps, missing.Key, missing.String()+" first", d.ch.String()+" first",
				"out of order: partition %d's changes must arrive in log order", p)
		}
	}
	return nil
}

// noGap (No gaps, no duplicates, rule 3): a change is the one expected
// next in its partition, none skipped.
func noGap(d *rangeCheck) *Violation {
	if exp := d.expected(d.ch.Partition); exp != d.ri {
		missing := &d.ix.recs[exp]
		return d.fail(NoGaps, missing.Key, missing.String(), d.ch.String(), "gap: the delta skips a change")
	}
	return nil
}

// nothingMissing (No gaps, no duplicates, rule 3): after a delta's last
// change, every selected state change of its range has arrived.
func nothingMissing(d *rangeCheck) *Violation {
	for p := range d.parts {
		if exp := d.expected(int32(p)); exp >= 0 {
			missing := &d.ix.recs[exp]
			return d.fail(NoGaps, missing.Key, missing.String(), "no such change in the delta", "gap: the delta skips a change")
		}
	}
	return nil
}

// oncePerKey (Slow readers are coalesced, rule 3): a coalesced delta
// carries each key once.
func oncePerKey(d *rangeCheck) *Violation {
	if d.seen[d.ch.Key] {
		return d.fail(NoGaps, d.ch.Key, "one change per key", d.ch.String()+" again", "a coalesced delta carries a key twice")
	}
	return nil
}

// inRange (Slow readers are coalesced, rule 3): a coalesced change is a
// record of its key inside the delta's range.
func inRange(d *rangeCheck) *Violation {
	ch := d.ch
	if d.touched[ch.Key] == nil || ch.Offset < d.from.Offset(ch.Partition) || ch.Offset >= d.to.Offset(ch.Partition) {
		return d.fail(NoGaps, ch.Key, "nothing (no record of the key in the delta's range)", ch.String(),
			"a coalesced delta carries a change outside its range")
	}
	return nil
}

// latestValue (Slow readers are coalesced, rule 3): for a key live at the
// delta's cursor, the change is its latest put. The model is at the
// cursor.
func latestValue(d *rangeCheck) *Violation {
	after := d.m.get(d.ch.Key)
	if after < 0 {
		return nil
	}
	if rec := &d.ix.recs[after]; !d.ch.Deleted && rec.Offset == d.ch.Offset && rec.Partition == d.ch.Partition {
		return nil
	}
	return d.fail(NoGaps, d.ch.Key, d.ix.recs[after].String(), d.ch.String(), "a coalesced delta must carry the key's latest value")
}

// deleteWhenAbsent (Slow readers are coalesced, rule 3): for a key absent
// at the delta's cursor, the change is a delete.
func deleteWhenAbsent(d *rangeCheck) *Violation {
	if d.m.get(d.ch.Key) < 0 && !d.ch.Deleted {
		return d.fail(NoGaps, d.ch.Key, "a delete", d.ch.String(), "the key is absent at the delta's cursor")
	}
	return nil
}

// deleteNotStale (Slow readers are coalesced, rule 3): a delete names a
// tombstone no older than the key's last state change in the range.
func deleteNotStale(d *rangeCheck) *Violation {
	t := d.touched[d.ch.Key]
	if d.m.get(d.ch.Key) < 0 && d.rec.Offset < t.lastChange {
		return d.fail(NoGaps, d.ch.Key, fmt.Sprintf("a tombstone at or after offset %d", t.lastChange), d.ch.String(),
			"the delete is older than the key's last change in the range")
	}
	return nil
}

// noKeyMissed (Slow readers are coalesced, rule 3): after a coalesced
// delta's last change, every selected key whose state changed over the
// range was carried.
func noKeyMissed(d *rangeCheck) *Violation {
	for _, k := range slices.Sorted(maps.Keys(d.touched)) {
		after := d.m.get(k)
		if after == d.touched[k].before || d.seen[k] {
			continue
		}
		want := "a delete of the key"
		if after >= 0 {
			want = d.ix.recs[after].String()
		}
		return d.fail(NoGaps, k, want, "no change for the key", "gap: the coalesced delta misses a key that changed")
	}
	return nil
}

// preconditionsHeld (Conditional writes hold their preconditions, rule
// 8): every record a gateway applies that carries a precondition had it
// hold at its position in the log, judged against the key's latest earlier record in its partition
// that is still in the log: for a version, that record is the one named,
// and live; for absent, there is none or it is a tombstone. A violation
// means two conditional writes both won (or a foreign producer forged
// the header). Compaction only removes records superseded by a later one
// of their key, so the judgment stays sound: a version whose record is no
// longer in the log is not judged, and a key with no earlier record left
// was absent as far as the log can tell. The first violation in
// partition, then offset order is reported.
func preconditionsHeld(ix *logIndex) *Violation {
	for _, idx := range ix.parts {
		last := map[string]int32{} // per key: its latest record so far
		for _, ri := range idx {
			r := &ix.recs[ri]
			if r.skip != "" {
				continue
			}
			prev, had := last[r.Key]
			last[r.Key] = ri
			var before *logRec
			if had {
				before = &ix.recs[prev]
			}
			if v := condHeld(ix, r, before); v != nil {
				return v
			}
		}
	}
	return nil
}

// condHeld judges r's precondition given the key's latest earlier record
// in the log (nil: none left).
func condHeld(ix *logIndex, r, before *logRec) *Violation {
	c := r.cond
	got := absent
	if before != nil {
		got = before.String()
	}
	var want, why string
	switch c.Kind {
	case store.CondAbsent:
		if before == nil || before.Tombstone {
			return nil
		}
		want = fmt.Sprintf("%q absent (no record, or a tombstone)", r.Key)
		why = "the key was live"
	case store.CondVersion:
		named, _, ok := ix.find(c.Partition, c.Offset)
		if !ok {
			return nil // compacted away (or never there): cannot judge
		}
		if named == before && !before.Tombstone {
			return nil
		}
		want = fmt.Sprintf("%q live at %d:%d", r.Key, c.Partition, c.Offset)
		if named != before {
			want += fmt.Sprintf(" (the log holds %s there)", named)
		}
		why = "the key's latest earlier record is not the live record it names"
	default:
		return nil
	}
	rec := r.asChange()
	v := &Violation{Index: -1, Rule: PreconditionsHeld, Key: r.Key, Expected: want, Got: got, Record: &rec,
		Detail: fmt.Sprintf("the record's precondition %q did not hold at its position: %s (two conditional writes both won, or a foreign producer forged it)", c, why)}
	if r.set >= 0 {
		v.Set = ix.sets[r.set].id
	}
	return v
}
