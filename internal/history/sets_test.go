package history

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/testkit"
	"github.com/confgate/confgate/store"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Headers of the serialization point, as the gateways write them.
func setH(i, n int, id string) kgo.RecordHeader {
	return kgo.RecordHeader{Key: store.SetHeader, Value: []byte(store.SetMark{Index: i, Count: n, ID: id}.String())}
}

func ifH(r testkit.LogRecord) kgo.RecordHeader {
	return kgo.RecordHeader{Key: store.IfHeader, Value: []byte(store.Cond{Kind: store.CondVersion, Partition: r.Partition, Offset: r.Offset}.String())}
}

func ifAbsentH() kgo.RecordHeader {
	return kgo.RecordHeader{Key: store.IfHeader, Value: []byte("absent")}
}

// putH and delH write a record with headers.
func (l *logBuilder) putH(key, value string, hs ...kgo.RecordHeader) testkit.LogRecord {
	l.put(key, value)
	l.recs[len(l.recs)-1].Headers = hs
	return l.recs[len(l.recs)-1]
}

func (l *logBuilder) delH(key string, hs ...kgo.RecordHeader) testkit.LogRecord {
	l.del(key)
	l.recs[len(l.recs)-1].Headers = hs
	return l.recs[len(l.recs)-1]
}

// compact removes records from the log, as compaction would.
func (l *logBuilder) compact(rs ...testkit.LogRecord) {
	l.recs = slices.DeleteFunc(l.recs, func(r testkit.LogRecord) bool {
		return slices.ContainsFunc(rs, func(c testkit.LogRecord) bool { return c.Partition == r.Partition && c.Offset == r.Offset })
	})
}

// upTo is c moved to just past r in r's partition.
func upTo(c cursor.Cursor, r testkit.LogRecord) cursor.Cursor {
	c = c.Clone()
	c.Offsets[r.Partition] = r.Offset + 1
	return c
}

// Two keys under a/ in different partitions, and one under b/ (not
// selected by base's client) in each partition.
var (
	aP0, aP1 = keyIn("a/s", 0), keyIn("a/s", 1)
	bP0, bP1 = keyIn("b/s", 0), keyIn("b/s", 1)
)

var setCorrectCases = []checkCase{
	{name: "a change set whole in one delta, across partitions", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		s0 := l.putH(aP0, "1", setH(0, 3, "req1"))
		l.put("b/other", "1") // another writer's record between
		s1 := l.putH(aP1, "1", setH(1, 3, "req1"))
		l.putH(bP0, "1", setH(2, 3, "req1"))
		cl.Observe(delta(l.cur(), s1, s0))
	}},
	{name: "change sets whole in progress, then delta", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		l.putH(bP0, "1", setH(0, 2, "req1"))
		l.putH(bP1, "1", setH(1, 2, "req1"))
		cl.Observe(progress(l.cur()))
		s0 := l.putH(aP0, "1", setH(0, 2, "req2"))
		s1 := l.putH(aP1, "1", setH(1, 2, "req2"))
		cl.Observe(delta(l.cur(), s0, s1))
	}},
	{name: "a delta cut before a change set, another after it", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		x2 := l.put("a/x", "2")
		c1 := l.cur()
		s0 := l.putH(aP0, "1", setH(0, 2, "req1"))
		s1 := l.putH(aP1, "1", setH(1, 2, "req1"))
		cl.Observe(delta(c1, x2))
		cl.Observe(delta(l.cur(), s0, s1))
	}},
	{name: "snapshot at a cursor holding a whole set", build: func(l *logBuilder, r *Recorder) {
		s0 := l.putH(aP0, "1", setH(0, 2, "req1"))
		s1 := l.putH(aP1, "1", setH(1, 2, "req1"))
		r.Client("c", []string{"a/"}).Observe(snap(l.cur(), s0, s1))
	}},
	{name: "a set of one, a conditional write", build: func(l *logBuilder, r *Recorder) {
		cl, _, rs := base(l, r)
		x2 := l.putH("a/x", "2", setH(0, 1, "req1"), ifH(rs[0]))
		cl.Observe(delta(l.cur(), x2))
	}},
	{name: "a set missing a record (compacted) is judged on the records present, whole", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		s0 := l.putH(aP0, "1", setH(0, 3, "req1"))
		gone := l.putH(bP0, "1", setH(1, 3, "req1"))
		s2 := l.putH(aP1, "1", setH(2, 3, "req1"))
		l.compact(gone)
		cl.Observe(delta(l.cur(), s0, s2))
	}},
	{name: "an ID that landed twice is not judged", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		s0 := l.putH(aP0, "1", setH(0, 2, "req1"))
		s1 := l.putH(aP1, "1", setH(1, 2, "req1"))
		cl.Observe(delta(l.cur(), s0, s1))
		t0 := l.putH(aP0, "2", setH(0, 2, "req1"))
		t1 := l.putH(aP1, "2", setH(1, 2, "req1"))
		cl.Observe(delta(l.cur(), t0, t1))
	}},
	{name: "same ID, another count: another set", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		s0 := l.putH(aP0, "1", setH(0, 1, "req1"))
		c1 := l.cur()
		s1 := l.putH(aP1, "1", setH(0, 2, "req1"))
		cl.Observe(delta(c1, s0))
		cl.Observe(delta(l.cur(), s1))
	}},
	{name: "malformed set headers are ignored", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		s0 := l.putH(aP0, "1", kgo.RecordHeader{Key: store.SetHeader, Value: []byte("2/1:req1")})
		c1 := l.cur()
		s1 := l.putH(aP1, "1", kgo.RecordHeader{Key: store.SetHeader, Value: []byte("1/2:")})
		cl.Observe(delta(c1, s0))
		cl.Observe(delta(l.cur(), s1))
	}},
	{name: "the last of repeated set headers counts", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		s0 := l.putH(aP0, "1", setH(0, 2, "req1"), setH(0, 1, "req2"))
		c1 := l.cur()
		s1 := l.putH(aP1, "1", setH(1, 2, "req1"))
		cl.Observe(delta(c1, s0))
		cl.Observe(delta(l.cur(), s1))
	}},
	{name: "a record a gateway skips is no part of a set", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		bad := l.at((partOf(aP0)+1)%nparts, aP0, []byte("misrouted"), false)
		l.recs[len(l.recs)-1].Headers = []kgo.RecordHeader{setH(0, 2, "req1")}
		c1 := upTo(cl.Cursor(), bad)
		s1 := l.putH(aP1, "1", setH(1, 2, "req1"))
		cl.Observe(progress(c1))
		cl.Observe(delta(l.cur(), s1))
	}},
	{name: "a restored client's resume cursor is not its observation", build: func(l *logBuilder, r *Recorder) {
		l.put("a/x", "1")
		l.putH(aP0, "1", setH(0, 2, "req1"))
		saved := l.cur() // cuts the set: not observed by this client
		s1 := l.putH(aP1, "1", setH(1, 2, "req1"))
		cl := r.Client("restored", []string{"a/"})
		cl.Reconnect(saved, "gw")
		cl.Observe(delta(l.cur(), s1))
	}},
}

var setViolationCases = []checkCase{
	{name: "a delta whose cursor cuts a set across partitions", build: func(l *logBuilder, r *Recorder) {
		cl, c0, _ := base(l, r)
		s0 := l.putH(aP0, "1", setH(0, 2, "req1"))
		l.putH(aP1, "1", setH(1, 2, "req1"))
		cl.Observe(delta(upTo(c0, s0), s0))
	}, want: &want{client: "c", rule: ChangeSetsAtomic, index: 1, set: "req1", detail: `cuts a change set: it covers 1 of its records and not the other 1`}},
	{name: "a progress cursor cutting a set of unselected keys", build: func(l *logBuilder, r *Recorder) {
		cl, c0, _ := base(l, r)
		l.putH(bP0, "1", setH(0, 2, "req1"))
		s1 := l.putH(bP1, "1", setH(1, 2, "req1"))
		cl.Observe(progress(upTo(c0, s1)))
	}, want: &want{client: "c", rule: ChangeSetsAtomic, index: 1, set: "req1", detail: "cuts a change set"}},
	{name: "a cursor cutting a set within one partition", build: func(l *logBuilder, r *Recorder) {
		cl, c0, _ := base(l, r)
		x2 := l.putH("a/x", "2", setH(0, 2, "req1"))
		l.putH("b/z", "2") // between the set's records, another partition or not
		l.putH(keyIn("a/s", partOf("a/x")), "1", setH(1, 2, "req1"))
		cl.Observe(delta(upTo(c0, x2), x2))
	}, want: &want{client: "c", rule: ChangeSetsAtomic, index: 1, set: "req1", detail: "cuts a change set"}},
	{name: "an initial snapshot at a cursor holding half a set", build: func(l *logBuilder, r *Recorder) {
		l.put("a/x", "1")
		l.putH(aP0, "1", setH(0, 2, "req1"))
		c := l.cur() // holds the set's first record, not its second
		l.putH(aP1, "1", setH(1, 2, "req1"))
		st, _ := StateAt(l.recs, c, []string{"a/"})
		o := Obs{Kind: Snapshot, Cursor: c, Reason: "SNAPSHOT_REASON_INITIAL"}
		for _, k := range slices.Sorted(maps.Keys(st)) {
			o.Changes = append(o.Changes, st[k])
		}
		r.Client("c", []string{"a/"}).Observe(o)
	}, want: &want{client: "c", rule: ChangeSetsAtomic, index: 0, set: "req1", detail: "cuts a change set"}},
	{name: "a reset snapshot at a cursor holding half a set", build: func(l *logBuilder, r *Recorder) {
		cl, _, rs := base(l, r)
		l.putH(bP0, "1", setH(0, 3, "req9"))
		s1 := l.putH(bP1, "1", setH(1, 3, "req9"))
		l.putH(keyIn("b/s", 2), "1", setH(2, 3, "req9"))
		cl.Reconnect(cl.Cursor(), "gw2")
		cl.Observe(reset(upTo(cl.Cursor(), s1), "SNAPSHOT_REASON_HISTORY_EXPIRED", rs...))
	}, want: &want{client: "c", rule: ChangeSetsAtomic, index: 1, set: "req9", detail: `covers 1 of its records and not the other 2`}},
	{name: "a set missing a record, cut on the records present", build: func(l *logBuilder, r *Recorder) {
		cl, c0, _ := base(l, r)
		s0 := l.putH(aP0, "1", setH(0, 3, "req1"))
		gone := l.putH(bP0, "1", setH(1, 3, "req1"))
		l.putH(aP1, "1", setH(2, 3, "req1"))
		l.compact(gone)
		cl.Observe(delta(upTo(c0, gone), s0))
	}, want: &want{client: "c", rule: ChangeSetsAtomic, index: 1, set: "req1", detail: "cuts a change set"}},
	{name: "a cursor cutting a set after an earlier whole one", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		s0 := l.putH(aP0, "1", setH(0, 2, "req1"))
		s1 := l.putH(aP1, "1", setH(1, 2, "req1"))
		cl.Observe(delta(l.cur(), s0, s1))
		t0 := l.putH(aP0, "2", setH(0, 2, "req2"))
		l.putH(aP1, "2", setH(1, 2, "req2"))
		cl.Observe(delta(upTo(cl.Cursor(), t0), t0))
	}, want: &want{client: "c", rule: ChangeSetsAtomic, index: 2, set: "req2", detail: "cuts a change set"}},
}

var condCorrectCases = []checkCase{
	{name: "conditional writes whose preconditions held", build: func(l *logBuilder, r *Recorder) {
		x := l.putH("a/x", "1", ifAbsentH())
		x2 := l.putH("a/x", "2", ifH(x))
		l.delH("a/x", ifH(x2))
		l.putH("a/x", "3", ifAbsentH())
		l.putH("a/y", "1", setH(0, 1, "req1"), ifAbsentH())
		// Another key's record between does not matter.
		z := l.put("b/z", "1")
		l.put(keyIn("b/", z.Partition), "1")
		l.putH("b/z", "2", ifH(z))
	}},
	{name: "a named version compacted away is not judged", build: func(l *logBuilder, r *Recorder) {
		x := l.put("a/x", "1")
		x2 := l.putH("a/x", "2", ifH(x))
		l.putH("a/x", "3", ifH(x)) // lost the race, but the log no longer shows it
		l.compact(x, x2)
	}},
	{name: "absent with every earlier record compacted away", build: func(l *logBuilder, r *Recorder) {
		x := l.put("a/x", "1")
		l.putH("a/x", "2", ifAbsentH())
		l.compact(x)
	}},
	{name: "malformed preconditions are ignored", build: func(l *logBuilder, r *Recorder) {
		l.put("a/x", "1")
		l.putH("a/x", "2", kgo.RecordHeader{Key: store.IfHeader, Value: []byte("present")})
		l.putH("a/x", "3", kgo.RecordHeader{Key: store.IfHeader, Value: []byte("0:-1")})
	}},
	{name: "a record a gateway skips is not judged", build: func(l *logBuilder, r *Recorder) {
		x := l.put("a/x", "1")
		wrong := (partOf("a/x") + 1) % nparts
		l.at(wrong, "a/x", []byte("misrouted"), false)
		l.recs[len(l.recs)-1].Headers = []kgo.RecordHeader{ifAbsentH()}
		l.at(wrong, "a/x", []byte("misrouted"), false)
		l.recs[len(l.recs)-1].Headers = []kgo.RecordHeader{ifAbsentH()}
		r.Client("c", nil).Observe(snap(l.cur(), x)) // gives the partition count
	}},
}

var condViolationCases = []checkCase{
	{name: "two conditional writes on one version both won", build: func(l *logBuilder, r *Recorder) {
		l.put("a/x", "0")
		l.put("a/x", "1")
		v5 := l.put("a/x", "2")
		l.putH("a/x", "3", setH(0, 1, "w1"), ifH(v5))
		l.put("b/z", "1")
		l.putH("a/x", "3", setH(0, 1, "w2"), ifH(v5))
	}, want: &want{client: "", rule: PreconditionsHeld, index: -1, key: "a/x", set: "w2", detail: "did not hold"}},
	{name: "absent, but the key is live", build: func(l *logBuilder, r *Recorder) {
		l.put("a/x", "1")
		l.putH("a/x", "2", ifAbsentH())
	}, want: &want{client: "", rule: PreconditionsHeld, index: -1, key: "a/x", detail: `precondition "absent" did not hold at its position: the key was live`}},
	{name: "two creates both won", build: func(l *logBuilder, r *Recorder) {
		l.putH("a/x", "1", ifAbsentH())
		l.putH("a/x", "2", ifAbsentH())
	}, want: &want{client: "", rule: PreconditionsHeld, index: -1, key: "a/x", detail: `precondition "absent" did not hold at its position: the key was live`}},
	{name: "a version that is a tombstone", build: func(l *logBuilder, r *Recorder) {
		l.put("a/x", "1")
		d := l.del("a/x")
		l.putH("a/x", "2", ifH(d))
	}, want: &want{client: "", rule: PreconditionsHeld, index: -1, key: "a/x", detail: "did not hold"}},
	{name: "a version of another key", build: func(l *logBuilder, r *Recorder) {
		other := l.put(keyIn("a/o", partOf("a/x")), "1")
		l.putH("a/x", "1", ifH(other))
	}, want: &want{client: "", rule: PreconditionsHeld, index: -1, key: "a/x", detail: "did not hold"}},
	{name: "a version after the record", build: func(l *logBuilder, r *Recorder) {
		l.putH("a/x", "2", ifH(testkit.LogRecord{Partition: partOf("a/x"), Offset: 1}))
		l.put("a/x", "3")
	}, want: &want{client: "", rule: PreconditionsHeld, index: -1, key: "a/x", detail: "did not hold"}},
	{name: "a conditional delete of a version superseded", build: func(l *logBuilder, r *Recorder) {
		x := l.put("a/x", "1")
		l.put("a/x", "2")
		l.delH("a/x", ifH(x))
	}, want: &want{client: "", rule: PreconditionsHeld, index: -1, key: "a/x", detail: "did not hold"}},
	{name: "the log's violation comes before the clients'", build: func(l *logBuilder, r *Recorder) {
		x := l.put("a/x", "1")
		l.putH("a/x", "2", ifAbsentH())
		r.Client("a-bad", nil).Observe(snap(l.cur(), x))
	}, want: &want{client: "", rule: PreconditionsHeld, index: -1, key: "a/x", detail: "did not hold"}},
}

func TestChangeSetsAndPreconditionsAccepted(t *testing.T) {
	for _, tc := range append(slices.Clone(setCorrectCases), condCorrectCases...) {
		t.Run(tc.name, func(t *testing.T) {
			l, r := newLog(topicA), NewRecorder()
			tc.build(l, r)
			if err := r.Check(l.recs, topicA); err != nil {
				t.Fatalf("correct history rejected: %v", err)
			}
		})
	}
}

func TestChangeSetsAndPreconditionsViolated(t *testing.T) {
	for _, tc := range append(slices.Clone(setViolationCases), condViolationCases...) {
		t.Run(tc.name, func(t *testing.T) {
			v := runCase(tc)
			w := tc.want
			if v == nil || v.Client != w.client || v.Rule != w.rule || v.Index != w.index || v.Key != w.key || v.Set != w.set || !strings.Contains(v.Detail, w.detail) {
				t.Fatalf("got  %v\nwant client %q rule %q index %d key %q set %q detail containing %q", v, w.client, w.rule, w.index, w.key, w.set, w.detail)
			}
			switch w.rule {
			case ChangeSetsAtomic:
				if !strings.Contains(v.Got, "not covered #") || !strings.Contains(v.Got, "covered #") {
					t.Fatalf("got %q: want the set's covered and uncovered records", v.Got)
				}
			case PreconditionsHeld:
				if v.Record == nil || v.Record.Key != w.key {
					t.Fatalf("record %v, want the conditional record of %q", v.Record, w.key)
				}
			}
			t.Log(v)
		})
	}
}

func TestChangeSetViolationIsPrecise(t *testing.T) {
	l, r := newLog(topicA), NewRecorder()
	cl, c0, _ := base(l, r)
	s0 := l.putH(aP0, "1", setH(0, 3, "req1"))
	s1 := l.putH(aP1, "1", setH(1, 3, "req1"))
	s2 := l.putH(bP0, "1", setH(2, 3, "req1"))
	cl.Observe(delta(upTo(c0, s1), s1))
	err := r.Check(l.recs, topicA)
	var v *Violation
	if !errors.As(err, &v) {
		t.Fatalf("Check = %v", err)
	}
	for _, part := range []string{`client "c"`, "observation #1", "delta at", "change sets atomic", `change set "req1"`,
		"covered #1 " + (&logRec{LogRecord: s1}).String(), "not covered #0 " + (&logRec{LogRecord: s0}).String(),
		"#2 " + (&logRec{LogRecord: s2}).String()} {
		if !strings.Contains(err.Error(), part) {
			t.Fatalf("message %q lacks %q", err, part)
		}
	}
	if v.Set != "req1" || v.Rule != ChangeSetsAtomic {
		t.Fatalf("violation %+v", v)
	}
}

func TestPreconditionViolationIsPrecise(t *testing.T) {
	l, r := newLog(topicA), NewRecorder()
	v5 := l.put("a/x", "1")
	won := l.putH("a/x", "2", setH(0, 1, "w1"), ifH(v5))
	lost := l.putH("a/x", "3", setH(0, 1, "w2"), ifH(v5))
	x := l.put("b/x", "1")
	r.Client("c", []string{"b/"}).Observe(snap(l.cur(), x))
	vs, err := r.CheckAll(l.recs, topicA)
	if err != nil || len(vs) != 1 {
		t.Fatalf("CheckAll = %v, %v", vs, err)
	}
	v := vs[0]
	if v.Rule != PreconditionsHeld || v.Client != "" || v.Index != -1 || v.Set != "w2" ||
		v.Record == nil || v.Record.Offset != lost.Offset || v.Record.Partition != lost.Partition {
		t.Fatalf("violation %+v", v)
	}
	want := fmt.Sprintf(`history: the log, record put "a/x"="3" @%d:%d: preconditions held: the record's precondition "%d:%d" did not hold`,
		lost.Partition, lost.Offset, v5.Partition, v5.Offset)
	if msg := v.Error(); !strings.HasPrefix(msg, want) || !strings.Contains(msg, `change set "w2"`) ||
		!strings.Contains(msg, fmt.Sprintf(`expected "a/x" live at %d:%d`, v5.Partition, v5.Offset)) ||
		!strings.Contains(msg, fmt.Sprintf(`got put "a/x"="2" @%d:%d`, won.Partition, won.Offset)) {
		t.Fatalf("message %q, want it to start with %q and name the set, the version and the record that won", msg, want)
	}
}

// A rule's number is the package doc's: docs/guarantees.md cites them.
func TestRuleNumbers(t *testing.T) {
	for n, r := range map[int]Rule{1: NeverBackwards, 2: SnapshotExact, 3: NoGaps, 4: ProgressExact, 5: Resumable, 6: Convergent, 7: ChangeSetsAtomic, 8: PreconditionsHeld} {
		if int(r) != n {
			t.Errorf("rule %q is %d, want %d", r, int(r), n)
		}
	}
}
