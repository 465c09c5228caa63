package history

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/twmb/franz-go/pkg/kgo"
)

const nparts = 3

var (
	topicA = cursor.TopicID{0xa}
	topicB = cursor.TopicID{0xb}
)

// logBuilder writes a synthetic log the way Kafka's default partitioner
// would place its keys.
type logBuilder struct {
	topic cursor.TopicID
	recs  []testkit.LogRecord
	next  []int64
}

func newLog(topic cursor.TopicID) *logBuilder {
	return &logBuilder{topic: topic, next: make([]int64, nparts)}
}

var partitioner = kgo.StickyKeyPartitioner(nil).ForTopic("")

func partOf(key string) int32 {
	return int32(partitioner.Partition(&kgo.Record{Key: []byte(key)}, nparts))
}

// keyIn returns a key under prefix that lands in partition p.
func keyIn(prefix string, p int32) string {
	for i := 0; ; i++ {
		if k := fmt.Sprintf("%s%d", prefix, i); partOf(k) == p {
			return k
		}
	}
}

func (l *logBuilder) at(p int32, key string, value []byte, tomb bool) testkit.LogRecord {
	r := testkit.LogRecord{Partition: p, Offset: l.next[p], Key: key, Value: value, Tombstone: tomb}
	l.next[p]++
	l.recs = append(l.recs, r)
	return r
}

func (l *logBuilder) put(key, value string) testkit.LogRecord {
	return l.at(partOf(key), key, []byte(value), false)
}

func (l *logBuilder) del(key string) testkit.LogRecord { return l.at(partOf(key), key, nil, true) }

// marker moves partition p past an offset that holds no data record (a
// transaction marker).
func (l *logBuilder) marker(p int32) { l.next[p]++ }

func (l *logBuilder) cur() cursor.Cursor {
	return cursor.Cursor{Topic: l.topic, Offsets: append([]int64(nil), l.next...)}
}

func ch(r testkit.LogRecord) Change {
	return Change{Key: r.Key, Value: r.Value, Partition: r.Partition, Offset: r.Offset, Deleted: r.Tombstone}
}

func chs(rs ...testkit.LogRecord) []Change {
	out := make([]Change, len(rs))
	for i, r := range rs {
		out[i] = ch(r)
	}
	return out
}

func snap(c cursor.Cursor, rs ...testkit.LogRecord) Obs {
	return Obs{Kind: Snapshot, Cursor: c, Changes: chs(rs...), Reason: "SNAPSHOT_REASON_INITIAL"}
}

func reset(c cursor.Cursor, reason string, rs ...testkit.LogRecord) Obs {
	return Obs{Kind: Snapshot, Cursor: c, Changes: chs(rs...), Reset: true, Reason: reason}
}

func delta(c cursor.Cursor, rs ...testkit.LogRecord) Obs {
	return Obs{Kind: Delta, Cursor: c, Changes: chs(rs...)}
}

func coalesced(c cursor.Cursor, rs ...testkit.LogRecord) Obs {
	return Obs{Kind: Delta, Cursor: c, Changes: chs(rs...), Coalesced: true}
}

func progress(c cursor.Cursor) Obs { return Obs{Kind: Progress, Cursor: c} }

// want is the first violation a case must report.
type want struct {
	client string
	rule   Rule
	index  int
	key    string
	detail string // a part of Detail
	set    string // the change set's request ID (Violation.Set)
}

type checkCase struct {
	name  string
	build func(l *logBuilder, r *Recorder)
	want  *want // nil: the history is correct
}

// base writes a/x=1, a/y=1, b/z=1 and gives client "c" (selector a/) the
// snapshot at that point. It returns the snapshot's cursor.
func base(l *logBuilder, r *Recorder) (*ClientLog, cursor.Cursor, []testkit.LogRecord) {
	x, y := l.put("a/x", "1"), l.put("a/y", "1")
	l.put("b/z", "1")
	c0 := l.cur()
	cl := r.Client("c", []string{"a/"})
	cl.Observe(snap(c0, x, y))
	return cl, c0, []testkit.LogRecord{x, y}
}

var correctCases = []checkCase{
	{name: "snapshot, deltas, progress", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		x2 := l.put("a/x", "2")
		l.put("b/z", "2")
		dy := l.del("a/y")
		cl.Observe(delta(l.cur(), x2, dy))
		cl.Observe(progress(l.cur()))
		l.put("b/q", "1")
		l.marker(0)
		cl.Observe(progress(l.cur()))
		n := l.put("a/new", "1")
		cl.Observe(delta(l.cur(), n))
	}},
	{name: "every key, several prefixes, empty selector", build: func(l *logBuilder, r *Recorder) {
		x, z := l.put("a/x", "1"), l.put("b/z", "1")
		qk := keyIn("c/", (partOf("b/z")+1)%nparts)
		q := l.put(qk, "1")
		all := r.Client("all", nil)
		two := r.Client("two", []string{"b/", "a/", "a/"})
		every := r.Client("every", []string{"zzz/", ""})
		all.Observe(snap(l.cur(), x, z, q))
		two.Observe(snap(l.cur(), x, z))
		every.Observe(snap(l.cur(), x, z, q))
		z2 := l.put("b/z", "2")
		q2 := l.put(qk, "2")
		all.Observe(delta(l.cur(), z2, q2))
		two.Observe(delta(l.cur(), z2))
		every.Observe(delta(l.cur(), q2, z2)) // across partitions, any order
	}},
	{name: "a delete of an absent key is not sent", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		l.del("a/never")
		cl.Observe(progress(l.cur()))
		x2 := l.put("a/x", "2")
		l.del("a/never")
		cl.Observe(delta(l.cur(), x2))
	}},
	{name: "one batch split into two deltas", build: func(l *logBuilder, r *Recorder) {
		cl, c0, _ := base(l, r)
		x2 := l.put("a/x", "2")
		mid := c0.Clone()
		mid.Offsets[x2.Partition] = x2.Offset + 1
		x3 := l.put("a/x", "3")
		y2 := l.put("a/y", "2")
		cl.Observe(delta(mid, x2))
		cl.Observe(delta(l.cur(), x3, y2))
	}},
	{name: "reconnect and resume from history", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		x2 := l.put("a/x", "2")
		cl.Observe(delta(l.cur(), x2))
		c1 := cl.Cursor()
		x3 := l.put("a/x", "3")
		dy := l.del("a/y")
		cl.Reconnect(c1, "gw2")
		cl.Observe(progress(c1)) // the resume is confirmed at once
		cl.Observe(delta(l.cur(), x3, dy))
	}},
	{name: "resume answered by a flagged reset snapshot", build: func(l *logBuilder, r *Recorder) {
		cl, _, rs := base(l, r)
		c0 := cl.Cursor()
		x2 := l.put("a/x", "2")
		cl.Reconnect(c0, "late-gateway")
		cl.Observe(reset(l.cur(), "SNAPSHOT_REASON_HISTORY_EXPIRED", x2, rs[1]))
	}},
	{name: "slow subscriber: coalesced delta, then a reset snapshot", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		l.put("a/x", "2")
		x3 := l.put("a/x", "3")
		dy := l.del("a/y")
		l.put("a/n", "1")
		l.del("a/n")
		cl.Observe(coalesced(l.cur(), x3, dy)) // a/n: put then deleted, absent at both ends: omitted
		x4 := l.put("a/x", "4")
		cl.Observe(reset(l.cur(), "SNAPSHOT_REASON_SLOW_SUBSCRIBER", x4))
	}},
	{name: "coalesced delta including a delete of a key absent at both ends", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		n := l.put("a/n", "1")
		dn := l.del("a/n")
		l.del("a/never")
		dnev := l.del("a/never2")
		x2 := l.put("a/x", "2")
		_ = n
		cl.Observe(coalesced(l.cur(), dnev, dn, x2))
	}},
	{name: "coalesced resume of a client restored from a saved view", build: func(l *logBuilder, r *Recorder) {
		x, y := l.put("a/x", "1"), l.put("a/y", "1")
		_, _ = x, y
		saved := l.cur()
		dy := l.del("a/y")
		z := l.put("a/z", "1")
		l.put("b/other", "1")
		cl := r.Client("restored", []string{"a/"})
		cl.Reconnect(saved, "gw")
		cl.Observe(coalesced(l.cur(), z, dy))
	}},
	{name: "reset snapshot after the topic changed", build: func(l *logBuilder, r *Recorder) {
		cl := r.Client("c", []string{"a/"})
		old := cursor.Cursor{Topic: topicB, Offsets: []int64{40, 40, 40}}
		cl.Observe(Obs{Kind: Snapshot, Cursor: old, Changes: []Change{{Key: "a/old", Value: []byte("v"), Partition: 1, Offset: 3}}})
		cl.Observe(progress(cursor.Cursor{Topic: topicB, Offsets: []int64{41, 40, 40}}))
		x := l.put("a/x", "1")
		cl.Reconnect(cl.Cursor(), "gw")
		cl.Observe(reset(l.cur(), "SNAPSHOT_REASON_TOPIC_CHANGED", x))
		x2 := l.put("a/x", "2")
		cl.Observe(delta(l.cur(), x2))
	}},
	{name: "state rebuilt mid-stream", build: func(l *logBuilder, r *Recorder) {
		cl, _, rs := base(l, r)
		cl.Observe(reset(l.cur(), "SNAPSHOT_REASON_STATE_REBUILT", rs...))
		cl.Observe(progress(l.cur()))
	}},
	{name: "misrouted, keyless and invalid records are skipped", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		wrong := (partOf("a/x") + 1) % nparts
		l.at(wrong, "a/x", []byte("misrouted"), false)
		l.at(0, "", []byte("nokey"), false)
		l.at(partOf("a//bad"), "a//bad", []byte("bad"), false)
		cl.Observe(progress(l.cur()))
		x2 := l.put("a/x", "2")
		cl.Observe(delta(l.cur(), x2))
	}},
	{name: "reconnect without a cursor, initial snapshot", build: func(l *logBuilder, r *Recorder) {
		cl, _, rs := base(l, r)
		x2 := l.put("a/x", "2")
		cl.Reconnect(cursor.Cursor{}, "gw2")
		cl.Observe(snap(l.cur(), x2, rs[1]))
	}},
	{name: "final view given by the client matches", build: func(l *logBuilder, r *Recorder) {
		cl, _, rs := base(l, r)
		cl.Final(map[string]Change{"a/x": ch(rs[0]), "a/y": ch(rs[1])})
	}},
}

var violationCases = []checkCase{
	{name: "cursor going backwards", build: func(l *logBuilder, r *Recorder) {
		cl, c0, _ := base(l, r)
		x2 := l.put("a/x", "2")
		cl.Observe(delta(l.cur(), x2))
		cl.Observe(progress(c0))
	}, want: &want{client: "c", rule: NeverBackwards, index: 2, detail: "backwards in partition"}},
	{name: "reset snapshot going backwards", build: func(l *logBuilder, r *Recorder) {
		cl, c0, rs := base(l, r)
		x2 := l.put("a/x", "2")
		cl.Observe(delta(l.cur(), x2))
		cl.Observe(reset(c0, "SNAPSHOT_REASON_SLOW_SUBSCRIBER", rs...))
	}, want: &want{client: "c", rule: NeverBackwards, index: 2}},
	{name: "delta naming another topic", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		cl.Observe(progress(cursor.Cursor{Topic: topicB, Offsets: []int64{9, 9, 9}}))
	}, want: &want{client: "c", rule: NeverBackwards, index: 1, detail: "another topic"}},
	{name: "snapshot missing a key", build: func(l *logBuilder, r *Recorder) {
		x, _ := l.put("a/x", "1"), l.put("a/y", "1")
		r.Client("c", []string{"a/"}).Observe(snap(l.cur(), x))
	}, want: &want{client: "c", rule: SnapshotExact, index: 0, key: "a/y", detail: "misses a live key"}},
	{name: "snapshot with an old value", build: func(l *logBuilder, r *Recorder) {
		x := l.put("a/x", "1")
		l.put("a/x", "2")
		r.Client("c", []string{"a/"}).Observe(snap(l.cur(), x))
	}, want: &want{client: "c", rule: SnapshotExact, index: 0, key: "a/x", detail: "another value or version"}},
	{name: "snapshot with an unselected key", build: func(l *logBuilder, r *Recorder) {
		x, z := l.put("a/x", "1"), l.put("b/z", "1")
		r.Client("c", []string{"a/"}).Observe(snap(l.cur(), x, z))
	}, want: &want{client: "c", rule: SnapshotExact, index: 0, key: "b/z", detail: "does not select"}},
	{name: "snapshot with a deleted key", build: func(l *logBuilder, r *Recorder) {
		x := l.put("a/x", "1")
		l.del("a/x")
		r.Client("c", nil).Observe(snap(l.cur(), x))
	}, want: &want{client: "c", rule: SnapshotExact, index: 0, key: "a/x", detail: "not live"}},
	{name: "snapshot with a wrong version", build: func(l *logBuilder, r *Recorder) {
		x := l.put("a/x", "1")
		c := ch(x)
		c.Offset++
		r.Client("c", nil).Observe(Obs{Kind: Snapshot, Cursor: l.cur(), Changes: []Change{c}})
	}, want: &want{client: "c", rule: SnapshotExact, index: 0, key: "a/x"}},
	{name: "snapshot whose digest does not match its entries", build: func(l *logBuilder, r *Recorder) {
		x := l.put("a/x", "1")
		o := snap(l.cur(), x)
		o.Digest = make([]byte, 16)
		r.Client("c", nil).Observe(o)
	}, want: &want{client: "c", rule: Protocol, index: 0, detail: "digest"}},
	{name: "delta with a gap", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		l.put("a/x", "2")
		z := l.put("a/z", "1")
		cl.Observe(delta(l.cur(), z))
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/x", detail: "gap"}},
	{name: "delta with a gap in the same partition", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		l.put("a/x", "2")
		x3 := l.put("a/x", "3")
		cl.Observe(delta(l.cur(), x3))
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/x", detail: "gap"}},
	{name: "a record sent again in the next delta", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		x2 := l.put("a/x", "2")
		cl.Observe(delta(l.cur(), x2))
		y2 := l.put("a/y", "2")
		cl.Observe(delta(l.cur(), x2, y2))
	}, want: &want{client: "c", rule: NoGaps, index: 2, key: "a/x", detail: "duplicate: the previous cursor"}},
	{name: "a record twice in one delta", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		x2 := l.put("a/x", "2")
		cl.Observe(delta(l.cur(), x2, x2))
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/x", detail: "twice"}},
	{name: "out of order within a partition", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		x2, x3 := l.put("a/x", "2"), l.put("a/x", "3")
		cl.Observe(delta(l.cur(), x3, x2))
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/x", detail: "out of order"}},
	{name: "a delete of a live key missing", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		x2 := l.put("a/x", "2")
		l.del("a/y")
		cl.Observe(delta(l.cur(), x2))
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/y", detail: "gap"}},
	{name: "a delete of an absent key sent", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		d := l.del("a/never")
		cl.Observe(delta(l.cur(), d))
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/never", detail: "not live"}},
	{name: "a change past the delta's cursor", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		c1 := l.cur()
		x2 := l.put("a/x", "2")
		cl.Observe(delta(c1, x2))
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/x", detail: "past the delta's own cursor"}},
	{name: "a change with another value than the log", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		x2 := l.put("a/x", "2")
		x2.Value = []byte("forged")
		cl.Observe(delta(l.cur(), x2))
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/x", detail: "differs from the log"}},
	{name: "a change of an unselected key", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		z := l.put("b/z", "2")
		cl.Observe(delta(l.cur(), z))
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "b/z", detail: "not selected"}},
	{name: "a change the log does not have", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		c := l.cur()
		p := partOf("a/x")
		c.Offsets[p] += 5
		cl.Observe(Obs{Kind: Delta, Cursor: c, Changes: []Change{{Key: "a/x", Value: []byte("9"), Partition: p, Offset: c.Offsets[p] - 1}}})
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/x", detail: "past the log's end"}},
	{name: "a misrouted record sent", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		bad := l.at((partOf("a/x")+1)%nparts, "a/x", []byte("misrouted"), false)
		cl.Observe(delta(l.cur(), bad))
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/x", detail: "misrouted"}},
	{name: "coalesced delta with an intermediate value", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		x2 := l.put("a/x", "2")
		l.put("a/x", "3")
		cl.Observe(coalesced(l.cur(), x2))
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/x", detail: "latest value"}},
	{name: "coalesced delta missing a delete", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		x2 := l.put("a/x", "2")
		l.del("a/y")
		cl.Observe(coalesced(l.cur(), x2))
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/y", detail: "misses a key"}},
	{name: "coalesced delta with a key twice", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		x2 := l.put("a/x", "2")
		cl.Observe(coalesced(l.cur(), x2, x2))
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/x", detail: "twice"}},
	{name: "coalesced delta with a stale delete", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		d1 := l.del("a/y")
		l.put("a/y", "2")
		l.del("a/y")
		cl.Observe(coalesced(l.cur(), d1))
	}, want: &want{client: "c", rule: NoGaps, index: 1, key: "a/y", detail: "older than the key's last change"}},
	{name: "progress that skips a change", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		l.put("b/z", "2")
		l.put("a/x", "2")
		cl.Observe(progress(l.cur()))
	}, want: &want{client: "c", rule: ProgressExact, index: 1, key: "a/x"}},
	{name: "progress that skips a delete", build: func(l *logBuilder, r *Recorder) {
		cl, _, _ := base(l, r)
		l.del("a/y")
		cl.Observe(progress(l.cur()))
	}, want: &want{client: "c", rule: ProgressExact, index: 1, key: "a/y"}},
	{name: "non-reset snapshot after a same-topic resume", build: func(l *logBuilder, r *Recorder) {
		cl, c0, rs := base(l, r)
		x2 := l.put("a/x", "2")
		cl.Reconnect(c0, "gw2")
		cl.Observe(snap(l.cur(), x2, rs[1]))
	}, want: &want{client: "c", rule: Resumable, index: 1, detail: "silent jump"}},
	{name: "non-reset snapshot mid-stream", build: func(l *logBuilder, r *Recorder) {
		cl, _, rs := base(l, r)
		x2 := l.put("a/x", "2")
		cl.Observe(snap(l.cur(), x2, rs[1]))
	}, want: &want{client: "c", rule: Resumable, index: 1, detail: "already delivered"}},
	{name: "reset snapshot on a stream opened without a cursor", build: func(l *logBuilder, r *Recorder) {
		x := l.put("a/x", "1")
		r.Client("c", nil).Observe(reset(l.cur(), "SNAPSHOT_REASON_HISTORY_EXPIRED", x))
	}, want: &want{client: "c", rule: Resumable, index: 0, detail: "initial"}},
	{name: "stream without a cursor starting with a delta", build: func(l *logBuilder, r *Recorder) {
		x := l.put("a/x", "1")
		r.Client("c", nil).Observe(delta(l.cur(), x))
	}, want: &want{client: "c", rule: Resumable, index: 0, detail: "must start with a snapshot"}},
	{name: "resumed from another cursor than the last", build: func(l *logBuilder, r *Recorder) {
		cl, c0, _ := base(l, r)
		x2 := l.put("a/x", "2")
		cl.Observe(delta(l.cur(), x2))
		cl.Reconnect(c0, "gw2")
		cl.Observe(delta(l.cur(), x2))
	}, want: &want{client: "c", rule: Resumable, index: 2, detail: "other than the last"}},
	{name: "resume that does not continue from its cursor", build: func(l *logBuilder, r *Recorder) {
		cl, c0, _ := base(l, r)
		l.put("a/x", "2")
		c1 := l.cur()
		cl.Reconnect(c0, "gw2")
		cl.Observe(progress(c1))
	}, want: &want{client: "c", rule: ProgressExact, index: 1, key: "a/x"}},
	{name: "final view that differs from the log", build: func(l *logBuilder, r *Recorder) {
		cl, _, rs := base(l, r)
		stale := ch(rs[0])
		stale.Value = []byte("0")
		cl.Final(map[string]Change{"a/x": stale, "a/y": ch(rs[1])})
	}, want: &want{client: "c", rule: Convergent, index: 0, key: "a/x", detail: "own final view"}},
	{name: "final cursor of another topic", build: func(l *logBuilder, r *Recorder) {
		l.put("a/x", "1")
		r.Client("c", nil).Observe(snap(cursor.Cursor{Topic: topicB, Offsets: []int64{1}}))
	}, want: &want{client: "c", rule: Convergent, index: 0, detail: "another topic"}},
	{name: "the first violating client in name order is reported", build: func(l *logBuilder, r *Recorder) {
		x := l.put("a/x", "1")
		r.Client("b-good", nil).Observe(snap(l.cur(), x))
		r.Client("c-bad", nil).Observe(snap(l.cur()))
		r.Client("a-bad", nil).Observe(snap(l.cur(), x, x))
	}, want: &want{client: "a-bad", rule: SnapshotExact, index: 0, key: "a/x", detail: "twice"}},
}

func TestCheckAcceptsCorrectHistories(t *testing.T) {
	for _, tc := range correctCases {
		t.Run(tc.name, func(t *testing.T) {
			l, r := newLog(topicA), NewRecorder()
			tc.build(l, r)
			if err := r.Check(l.recs, topicA); err != nil {
				t.Fatalf("correct history rejected: %v", err)
			}
		})
	}
}

func TestCheckReportsFirstViolation(t *testing.T) {
	for _, tc := range violationCases {
		t.Run(tc.name, func(t *testing.T) {
			l, r := newLog(topicA), NewRecorder()
			tc.build(l, r)
			err := r.Check(l.recs, topicA)
			var v *Violation
			if !errors.As(err, &v) {
				t.Fatalf("Check = %v, want a violation of %q", err, tc.want.rule)
			}
			w := tc.want
			if v.Client != w.client || v.Rule != w.rule || v.Index != w.index || v.Key != w.key || !strings.Contains(v.Detail, w.detail) {
				t.Fatalf("got  %v\nwant client %q rule %q index %d key %q detail containing %q", v, w.client, w.rule, w.index, w.key, w.detail)
			}
			t.Log(v)
		})
	}
}

// Every violation case is a correct history plus one mistake; CheckAll
// reports one violation per faulty client.
func TestCheckAllReportsEveryClient(t *testing.T) {
	l, r := newLog(topicA), NewRecorder()
	x := l.put("a/x", "1")
	r.Client("good", nil).Observe(snap(l.cur(), x))
	r.Client("bad1", nil).Observe(snap(l.cur()))
	r.Client("bad2", nil).Observe(progress(l.cur()))
	vs, err := r.CheckAll(l.recs, topicA)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || vs[0].Client != "bad1" || vs[1].Client != "bad2" {
		t.Fatalf("CheckAll = %v", vs)
	}
}

func TestViolationMessageIsPrecise(t *testing.T) {
	l, r := newLog(topicA), NewRecorder()
	cl, _, _ := base(l, r)
	cl.Reconnect(cl.Cursor(), "10.0.0.7:7070")
	l.put("a/x", "2")
	cl.Observe(progress(l.cur()))
	err := r.Check(l.recs, topicA)
	for _, part := range []string{`client "c"`, "observation #1", "progress at", "from ", "stream to 10.0.0.7:7070",
		"progress skips nothing", `key "a/x"`, `expected put "a/x"="2" @`, "got a progress message"} {
		if err == nil || !strings.Contains(err.Error(), part) {
			t.Fatalf("message %q lacks %q", err, part)
		}
	}
}

func TestLogErrors(t *testing.T) {
	r := NewRecorder()
	dup := []testkit.LogRecord{{Partition: 0, Offset: 1, Key: "a"}, {Partition: 0, Offset: 1, Key: "b"}}
	if err := r.Check(dup, topicA); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("Check of a log with a duplicate offset = %v", err)
	}
}

func TestStateAtAndDigest(t *testing.T) {
	l := newLog(topicA)
	x := l.put("a/x", "1")
	l.put("b/z", "1")
	c0 := l.cur()
	l.put("a/x", "2")
	l.del("b/z")
	got, err := StateAt(l.recs, c0, []string{"a/"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !sameChange(got["a/x"], ch(x)) {
		t.Fatalf("StateAt = %v", got)
	}
	if string(Digest(got)) == string(Digest(nil)) || string(Digest(nil)) != string(make([]byte, 16)) {
		t.Fatal("digest of a view")
	}
	if end := LogEnd(l.recs, topicA); !end.Equal(l.cur()) {
		t.Fatalf("LogEnd = %v, want %v", end, l.cur())
	}
}

// The proto adapter buffers chunks until SnapshotEnd, and records what is
// malformed for Check to report.
func TestObserveProto(t *testing.T) {
	l := newLog(topicA)
	x, y := l.put("a/x", "1"), l.put("a/y", "1")
	c0 := l.cur()
	entry := func(r testkit.LogRecord) *confgatev1.Entry {
		return &confgatev1.Entry{Key: r.Key, Value: r.Value, Version: &confgatev1.Version{Partition: r.Partition, Offset: r.Offset}}
	}
	chunk := func(rs ...testkit.LogRecord) *confgatev1.SubscribeResponse {
		c := &confgatev1.SnapshotChunk{}
		for _, r := range rs {
			c.Entries = append(c.Entries, entry(r))
		}
		return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_SnapshotChunk{SnapshotChunk: c}}
	}
	end := func(c cursor.Cursor, n uint64, dig []byte) *confgatev1.SubscribeResponse {
		return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_SnapshotEnd{SnapshotEnd: &confgatev1.SnapshotEnd{
			Cursor: c.Encode(), Reason: confgatev1.SnapshotReason_SNAPSHOT_REASON_INITIAL, EntryCount: n, Digest: dig}}}
	}
	goodDigest := digestOf(chs(x, y))

	r := NewRecorder()
	cl := r.Client("ok", []string{"a/"})
	cl.ObserveProto(chunk(x))
	cl.ObserveProto(chunk(y))
	cl.ObserveProto(end(c0, 2, goodDigest))
	x2 := l.put("a/x", "2")
	dy := l.del("a/y")
	cl.ObserveProto(&confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_Delta{Delta: &confgatev1.Delta{
		Cursor: l.cur().Encode(),
		Changes: []*confgatev1.Change{
			{Change: &confgatev1.Change_Put{Put: entry(x2)}},
			{Change: &confgatev1.Change_Delete{Delete: &confgatev1.Deletion{Key: "a/y", Version: &confgatev1.Version{Partition: dy.Partition, Offset: dy.Offset}}}},
		}}}})
	// A broken stream mid-snapshot: the partial chunks are dropped.
	cl.ObserveProto(chunk(x2))
	cl.Reconnect(cl.Cursor(), "gw2")
	cl.ObserveProto(&confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_Progress{Progress: &confgatev1.Progress{Cursor: l.cur().Encode()}}})
	if err := r.Check(l.recs, topicA); err != nil {
		t.Fatal(err)
	}
	if cl.Len() != 3 || !cl.Cursor().Equal(l.cur()) {
		t.Fatalf("%d observations, cursor %v", cl.Len(), cl.Cursor())
	}
	if v := r.View("ok"); len(v) != 1 || !sameChange(v["a/x"], ch(x2)) {
		t.Fatalf("view %v", v)
	}

	bad := []struct {
		name   string
		msgs   []*confgatev1.SubscribeResponse
		detail string
	}{
		{"chunks out of key order", []*confgatev1.SubscribeResponse{chunk(y, x), end(c0, 2, goodDigest)}, "out of key order"},
		{"entry count", []*confgatev1.SubscribeResponse{chunk(x, y), end(c0, 3, goodDigest)}, "says 3 entries"},
		{"digest", []*confgatev1.SubscribeResponse{chunk(x, y), end(c0, 2, make([]byte, 16))}, "digest"},
		{"undecodable cursor", []*confgatev1.SubscribeResponse{{Message: &confgatev1.SubscribeResponse_SnapshotEnd{SnapshotEnd: &confgatev1.SnapshotEnd{Cursor: []byte{9}}}}}, "undecodable cursor"},
		{"chunks without an end", []*confgatev1.SubscribeResponse{chunk(x), {Message: &confgatev1.SubscribeResponse_Progress{Progress: &confgatev1.Progress{Cursor: c0.Encode()}}}}, "not closed"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRecorder()
			cl := r.Client("c", []string{"a/"})
			for _, m := range tc.msgs {
				cl.ObserveProto(m)
			}
			var v *Violation
			if err := r.Check(l.recs, topicA); !errors.As(err, &v) || v.Rule != Protocol || !strings.Contains(v.Detail, tc.detail) {
				t.Fatalf("Check = %v, want a protocol violation about %q", err, tc.detail)
			}
		})
	}
}

// Resumed set by the caller without Reconnect means "resumed from the last
// cursor": a snapshot then must be a reset.
func TestResumedFlagWithoutReconnect(t *testing.T) {
	l, r := newLog(topicA), NewRecorder()
	cl, _, rs := base(l, r)
	o := snap(l.cur(), rs...)
	o.Resumed = true
	cl.Observe(o)
	var v *Violation
	if err := r.Check(l.recs, topicA); !errors.As(err, &v) || v.Rule != Resumable {
		t.Fatalf("Check = %v", err)
	}
}

// 20 clients with different selectors over a 50k-record log: one snapshot
// each, then every change in small deltas, progress, a resume and a
// coalesced catch-up.
func TestCheckScales(t *testing.T) {
	const (
		records = 50_000
		clients = 20
		keys    = 2_000
	)
	l, r := newLog(topicA), NewRecorder()
	for i := range keys / 2 {
		l.put(fmt.Sprintf("p%d/k%d", i%clients, i), "0")
	}
	type follower struct {
		cl   *ClientLog
		sel  selector
		from cursor.Cursor
		n    int
	}
	fs := make([]*follower, clients)
	for i := range fs {
		prefixes := []string{fmt.Sprintf("p%d/", i)}
		if i == 0 {
			prefixes = nil
		}
		fs[i] = &follower{cl: r.Client(fmt.Sprintf("c%02d", i), prefixes), sel: newSelector(prefixes)}
		st, err := StateAt(l.recs, l.cur(), prefixes)
		if err != nil {
			t.Fatal(err)
		}
		o := Obs{Kind: Snapshot, Cursor: l.cur()}
		for _, c := range st {
			o.Changes = append(o.Changes, c)
		}
		fs[i].cl.Observe(o)
		fs[i].from = l.cur()
	}
	live := map[string]bool{}
	for _, rec := range l.recs {
		live[rec.Key] = true
	}
	var pending []testkit.LogRecord
	flush := func() {
		for i, f := range fs {
			o := Obs{Kind: Delta, Cursor: l.cur()}
			for _, rec := range pending {
				if f.sel.match(rec.Key) && rec.Key != "" {
					o.Changes = append(o.Changes, ch(rec))
				}
			}
			switch {
			case f.n%50 == 49 && i%2 == 1:
				f.cl.Reconnect(f.cl.Cursor(), "gw")
				f.cl.Observe(progress(f.cl.Cursor()))
			}
			if len(o.Changes) == 0 {
				o = progress(l.cur())
			}
			f.cl.Observe(o)
			f.n++
		}
		pending = pending[:0]
	}
	for i := 0; len(l.recs) < records; i++ {
		k := fmt.Sprintf("p%d/k%d", i%clients, (i*7919)%keys)
		var rec testkit.LogRecord
		if i%5 == 4 {
			rec = l.del(k)
			if !live[k] {
				live[k] = false
				continue // not a change: not sent
			}
		} else {
			rec = l.put(k, fmt.Sprint(i))
		}
		live[k] = !rec.Tombstone
		pending = append(pending, rec)
		if len(pending) == 40 {
			flush()
		}
	}
	flush()
	start := time.Now()
	if err := r.Check(l.recs, topicA); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range fs {
		n += f.cl.Len()
	}
	t.Logf("checked %d clients, %d observations over %d records in %s", clients, n, len(l.recs), time.Since(start))
}

// ObserveStream turns a change of stream number into a Reconnect with the
// stream's resume cursor, as a client library's per-message hook reports.
func TestObserveStream(t *testing.T) {
	l := newLog(topicA)
	x := l.put("a/x", "1")
	c0 := l.cur()
	msg := func(o Obs) *confgatev1.SubscribeResponse {
		switch o.Kind {
		case Snapshot:
			return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_SnapshotEnd{SnapshotEnd: &confgatev1.SnapshotEnd{
				Cursor: o.Cursor.Encode(), Reset_: o.Reset, EntryCount: uint64(len(o.Changes))}}}
		case Delta:
			d := &confgatev1.Delta{Cursor: o.Cursor.Encode()}
			for _, c := range o.Changes {
				d.Changes = append(d.Changes, &confgatev1.Change{Change: &confgatev1.Change_Put{Put: &confgatev1.Entry{
					Key: c.Key, Value: c.Value, Version: &confgatev1.Version{Partition: c.Partition, Offset: c.Offset}}}})
			}
			return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_Delta{Delta: d}}
		}
		return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_Progress{Progress: &confgatev1.Progress{Cursor: o.Cursor.Encode()}}}
	}
	chunk := &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_SnapshotChunk{SnapshotChunk: &confgatev1.SnapshotChunk{
		Entries: []*confgatev1.Entry{{Key: x.Key, Value: x.Value, Version: &confgatev1.Version{Partition: x.Partition, Offset: x.Offset}}}}}}

	r := NewRecorder()
	cl := r.Client("c", nil)
	cl.ObserveStream(1, "gw1", nil, chunk)
	cl.ObserveStream(1, "gw1", nil, msg(snap(c0, x)))
	x2 := l.put("a/x", "2")
	cl.ObserveStream(1, "gw1", nil, msg(delta(l.cur(), x2)))
	c1 := l.cur()
	x3 := l.put("a/x", "3")
	cl.ObserveStream(2, "gw2", c1.Encode(), msg(progress(c1)))
	cl.ObserveStream(2, "gw2", c1.Encode(), msg(delta(l.cur(), x3)))
	if err := r.Check(l.recs, topicA); err != nil {
		t.Fatal(err)
	}
	// The same stream number again is no reconnect: a snapshot on it must
	// be flagged reset.
	cl.ObserveStream(2, "gw2", c1.Encode(), chunk)
	cl.ObserveStream(2, "gw2", c1.Encode(), msg(snap(l.cur(), x3)))
	var v *Violation
	if err := r.Check(l.recs, topicA); !errors.As(err, &v) || v.Rule != Resumable || v.Index != 4 || v.Addr != "gw2" {
		t.Fatalf("Check = %v", err)
	}

	r = NewRecorder()
	cl = r.Client("c", nil)
	cl.ObserveStream(1, "gw1", []byte{42}, msg(progress(c0)))
	if err := r.Check(l.recs, topicA); !errors.As(err, &v) || v.Rule != Protocol || !strings.Contains(v.Detail, "resume cursor") {
		t.Fatalf("Check = %v", err)
	}
}
