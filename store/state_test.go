package store

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/digest"
	"github.com/confgate/confgate/internal/keyspace"
)

var (
	topicA = cursor.TopicID{0xa}
	topicB = cursor.TopicID{0xb}
)

// Record constructors. Each call makes a fresh Entry: apply takes ownership.
func put(p int32, off int64, key, val string) rec {
	return rec{entry: &Entry{Key: key, Value: []byte(val)}, part: p, off: off}
}

func del(p int32, off int64, key string) rec {
	return rec{entry: &Entry{Key: key, Deleted: true}, part: p, off: off}
}

func skip(p int32, off int64, why skipReason) rec { return rec{part: p, off: off, skip: why} }

func recs(rs ...rec) []rec { return rs }

var bigLimits = historyLimits{batches: 1 << 20, bytes: 1 << 40}

// newTestState is an empty state of topicA at offset 0 on every partition,
// its first Seq 1 (as Store starts it).
func newTestState(parts int, lim historyLimits) *state {
	return newState(topicA, make([]int64, parts), 1, lim, logTrust{})
}

func cur(offs ...int64) cursor.Cursor { return cursor.Cursor{Topic: topicA, Offsets: offs} }

// show renders an entry as key=value@partition:offset, "-" for a tombstone.
func show(e *Entry) string {
	v := string(e.Value)
	if e.Deleted {
		v = "-"
	}
	return fmt.Sprintf("%s=%s@%d:%d", e.Key, v, e.Partition, e.Offset)
}

func showAll(es []*Entry) []string {
	out := []string{}
	for _, e := range es {
		out = append(out, show(e))
	}
	return out
}

// index lists the whole index, tombstones included, in key order.
func index(st *state) []string {
	out := []string{}
	st.tree.Ascend(func(e *Entry) bool {
		out = append(out, show(e))
		return true
	})
	return out
}

// checkCounts recomputes the digest, live and tombstone counts from scratch
// over the index and compares them with what apply maintained incrementally.
func checkCounts(t *testing.T, st *state) {
	t.Helper()
	var d digest.Digest
	live, tombs := 0, 0
	st.tree.Ascend(func(e *Entry) bool {
		if e.Deleted {
			tombs++
			return true
		}
		live++
		h := digest.Hash(e.Key, e.Value, e.Partition, e.Offset)
		if e.DigestHash() != h {
			t.Errorf("%s: DigestHash %v, want %v", show(e), e.DigestHash(), h)
		}
		d.Add(h)
		return true
	})
	if !bytes.Equal(st.dig.Bytes(), d.Bytes()) {
		t.Errorf("digest %x, recomputed from the live entries %x", st.dig.Bytes(), d.Bytes())
	}
	if st.live != live || st.tombs != tombs {
		t.Errorf("live=%d tombs=%d, index holds live=%d tombs=%d", st.live, st.tombs, live, tombs)
	}
}

// checkBatch asserts b is the batch apply just appended at seq.
func checkBatch(t *testing.T, st *state, b *Batch, seq uint64) {
	t.Helper()
	if b == nil {
		t.Fatal("no batch, want one")
	}
	if b.Seq != seq {
		t.Errorf("batch Seq %d, want %d", b.Seq, seq)
	}
	if st.nextSeq != seq+1 {
		t.Errorf("nextSeq %d, want %d", st.nextSeq, seq+1)
	}
	if c := st.cursor(); !b.End.Equal(c) || !slices.Equal(b.End.Offsets, c.Offsets) {
		t.Errorf("batch End %v, want the cursor %v", b.End.Offsets, c.Offsets)
	}
	if !bytes.Equal(b.EndBytes, b.End.Encode()) {
		t.Errorf("EndBytes %x, want End.Encode() %x", b.EndBytes, b.End.Encode())
	}
	if last := st.history[len(st.history)-1]; last != b {
		t.Errorf("history ends with Seq %d, not the returned batch", last.Seq)
	}
}

func seqs(bs []*Batch) []uint64 {
	out := []uint64{}
	for _, b := range bs {
		out = append(out, b.Seq)
	}
	return out
}

func TestApply(t *testing.T) {
	tests := []struct {
		name    string
		parts   int
		before  [][]rec // applied first, one apply per element
		recs    []rec   // the apply under test
		changes []string
		index   []string
		next    []int64
		applied int
		skipped map[skipReason]int
		batch   bool // the apply under test moves the cursor
	}{
		{
			name:    "puts",
			parts:   2,
			recs:    recs(put(0, 0, "a", "1"), put(1, 0, "b", "2"), put(0, 1, "c", "3")),
			changes: []string{"a=1@0:0", "b=2@1:0", "c=3@0:1"},
			index:   []string{"a=1@0:0", "b=2@1:0", "c=3@0:1"},
			next:    []int64{2, 1},
			applied: 3,
			batch:   true,
		},
		{
			name:    "offsets with gaps (compacted log)",
			parts:   1,
			recs:    recs(put(0, 5, "a", "1"), put(0, 9, "b", "2")),
			changes: []string{"a=1@0:5", "b=2@0:9"},
			index:   []string{"a=1@0:5", "b=2@0:9"},
			next:    []int64{10},
			applied: 2,
			batch:   true,
		},
		{
			name:    "overwrite",
			parts:   1,
			before:  [][]rec{recs(put(0, 0, "a", "1"), put(0, 1, "b", "2"))},
			recs:    recs(put(0, 2, "a", "3")),
			changes: []string{"a=3@0:2"},
			index:   []string{"a=3@0:2", "b=2@0:1"},
			next:    []int64{3},
			applied: 1,
			batch:   true,
		},
		{
			name:    "overwrite twice in one apply",
			parts:   1,
			before:  [][]rec{recs(put(0, 0, "a", "1"))},
			recs:    recs(put(0, 1, "a", "2"), put(0, 2, "a", "3")),
			changes: []string{"a=2@0:1", "a=3@0:2"},
			index:   []string{"a=3@0:2"},
			next:    []int64{3},
			applied: 2,
			batch:   true,
		},
		{
			name:    "empty value is a value",
			parts:   1,
			recs:    recs(put(0, 0, "a", "")),
			changes: []string{"a=@0:0"},
			index:   []string{"a=@0:0"},
			next:    []int64{1},
			applied: 1,
			batch:   true,
		},
		{
			name:    "delete a live key",
			parts:   2,
			before:  [][]rec{recs(put(0, 0, "a", "1"), put(1, 0, "b", "2"))},
			recs:    recs(del(0, 1, "a")),
			changes: []string{"a=-@0:1"},
			index:   []string{"a=-@0:1", "b=2@1:0"},
			next:    []int64{2, 1},
			applied: 1,
			batch:   true,
		},
		{
			// Nothing to remember: no reader holds a key the index
			// never had (TestDeleteAbsentWhileBootstrapping: before
			// recording it is kept).
			name:    "delete an absent key",
			parts:   1,
			before:  [][]rec{recs(put(0, 0, "b", "2"))},
			recs:    recs(del(0, 1, "a")),
			changes: []string{},
			index:   []string{"b=2@0:0"},
			next:    []int64{2},
			applied: 1,
			batch:   true,
		},
		{
			name:    "delete a tombstone again",
			parts:   1,
			before:  [][]rec{recs(put(0, 0, "a", "1"), del(0, 1, "a"))},
			recs:    recs(del(0, 2, "a")),
			changes: []string{},
			index:   []string{"a=-@0:2"},
			next:    []int64{3},
			applied: 1,
			batch:   true,
		},
		{
			name:    "put over a tombstone",
			parts:   1,
			before:  [][]rec{recs(put(0, 0, "a", "1"), del(0, 1, "a"))},
			recs:    recs(put(0, 2, "a", "3")),
			changes: []string{"a=3@0:2"},
			index:   []string{"a=3@0:2"},
			next:    []int64{3},
			applied: 1,
			batch:   true,
		},
		{
			name:    "below the cursor",
			parts:   2,
			before:  [][]rec{recs(put(0, 0, "a", "1"), put(0, 1, "a", "2"), put(1, 0, "b", "1"))},
			recs:    recs(put(0, 0, "a", "old"), del(0, 1, "a"), put(1, 0, "b", "old")),
			index:   []string{"a=2@0:1", "b=1@1:0"},
			next:    []int64{2, 1},
			skipped: map[skipReason]int{skipBackwards: 3},
		},
		{
			name:    "below the cursor mixed with new records",
			parts:   1,
			before:  [][]rec{recs(put(0, 0, "a", "1"), put(0, 1, "b", "1"))},
			recs:    recs(put(0, 1, "b", "old"), put(0, 2, "c", "1")),
			changes: []string{"c=1@0:2"},
			index:   []string{"a=1@0:0", "b=1@0:1", "c=1@0:2"},
			next:    []int64{3},
			applied: 1,
			skipped: map[skipReason]int{skipBackwards: 1},
			batch:   true,
		},
		{
			name:  "skips move the cursor",
			parts: 2,
			recs: recs(skip(0, 0, skipControl), skip(0, 1, skipBadKey), skip(1, 0, skipNoKey),
				skip(1, 1, skipMisrouted), skip(1, 2, skipBadKey)),
			changes: []string{},
			index:   []string{},
			next:    []int64{2, 3},
			skipped: map[skipReason]int{skipControl: 1, skipBadKey: 2, skipNoKey: 1, skipMisrouted: 1},
			batch:   true,
		},
		{
			name:    "a skip between puts",
			parts:   1,
			recs:    recs(put(0, 0, "a", "1"), skip(0, 1, skipControl), put(0, 2, "b", "2")),
			changes: []string{"a=1@0:0", "b=2@0:2"},
			index:   []string{"a=1@0:0", "b=2@0:2"},
			next:    []int64{3},
			applied: 2,
			skipped: map[skipReason]int{skipControl: 1},
			batch:   true,
		},
		{
			name:   "partition out of range",
			parts:  2,
			before: [][]rec{recs(put(0, 0, "a", "1"))},
			recs:   recs(put(2, 0, "x", "1"), put(-1, 0, "y", "1"), del(7, 3, "a"), skip(2, 1, skipControl)),
			index:  []string{"a=1@0:0"},
			next:   []int64{1, 0},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newTestState(tt.parts, bigLimits)
			st.startRecording(time.Now())
			for _, rs := range tt.before {
				st.apply(rs, 1)
			}
			checkCounts(t, st)
			seq, hist := st.nextSeq, len(st.history)

			b, res := st.apply(tt.recs, 2)

			if tt.batch {
				checkBatch(t, st, b, seq)
				if got := showAll(b.Changes); !slices.Equal(got, tt.changes) {
					t.Errorf("changes %q, want %q", got, tt.changes)
				}
			} else {
				if b != nil {
					t.Errorf("got batch Seq %d with changes %q, want none", b.Seq, showAll(b.Changes))
				}
				if st.nextSeq != seq || len(st.history) != hist {
					t.Errorf("nextSeq %d, history %d; want them unchanged at %d, %d", st.nextSeq, len(st.history), seq, hist)
				}
			}
			if got := index(st); !slices.Equal(got, tt.index) {
				t.Errorf("index %q, want %q", got, tt.index)
			}
			if !slices.Equal(st.next, tt.next) {
				t.Errorf("cursor %v, want %v", st.next, tt.next)
			}
			if res.applied != tt.applied {
				t.Errorf("applied %d, want %d", res.applied, tt.applied)
			}
			if !maps.Equal(res.skipped, tt.skipped) {
				t.Errorf("skipped %v, want %v", res.skipped, tt.skipped)
			}
			checkCounts(t, st)
		})
	}
}

// TestApplyDigest follows the digest through a longer mixed sequence,
// checking it against a from-scratch computation after every step.
func TestApplyDigest(t *testing.T) {
	st := newTestState(3, bigLimits)
	empty := st.dig.Bytes()
	steps := [][]rec{
		recs(put(0, 0, "a", "1"), put(1, 0, "b", "1"), put(2, 0, "c", "1")),
		recs(put(0, 1, "a", "2")),
		recs(del(1, 1, "b"), put(2, 1, "c", "2"), del(2, 2, "zz")),
		recs(put(1, 2, "b", "3"), del(0, 2, "a")),
		recs(del(1, 3, "b"), del(2, 3, "c")),
	}
	for i, rs := range steps {
		if i == 2 {
			st.startRecording(time.Now()) // the digest does not depend on recording
		}
		st.apply(rs, int64(i))
		checkCounts(t, st)
	}
	// Three tombstones: zz was never put, and its delete came after
	// recording started, so it is not remembered.
	if !bytes.Equal(st.dig.Bytes(), empty) || st.live != 0 || st.tombs != 3 {
		t.Fatalf("everything deleted: digest %x live %d tombs %d; want the empty digest %x, 0, 3", st.dig.Bytes(), st.live, st.tombs, empty)
	}
	// Same live entries reached by another path give the same digest.
	a, b := newTestState(1, bigLimits), newTestState(1, bigLimits)
	a.apply(recs(put(0, 0, "x", "1"), put(0, 1, "y", "2"), del(0, 2, "z")), 0)
	b.apply(recs(put(0, 0, "x", "1")), 0)
	b.apply(recs(put(0, 1, "y", "2")), 0)
	b.apply(recs(del(0, 2, "z")), 0)
	if !bytes.Equal(a.dig.Bytes(), b.dig.Bytes()) {
		t.Fatalf("same entries, different digests: %x vs %x", a.dig.Bytes(), b.dig.Bytes())
	}
}

func TestRecording(t *testing.T) {
	st := newTestState(2, bigLimits)

	t.Run("before startRecording", func(t *testing.T) {
		for i, rs := range [][]rec{
			recs(put(0, 0, "a", "1")),
			recs(put(1, 0, "b", "1"), del(0, 1, "a")),
			recs(skip(1, 1, skipControl)),
		} {
			if b, _ := st.apply(rs, int64(i)); b != nil {
				t.Fatalf("apply %d returned batch Seq %d while bootstrapping", i, b.Seq)
			}
		}
		if len(st.history) != 0 || st.nextSeq != 1 {
			t.Fatalf("history %d batches, nextSeq %d; want none and 1", len(st.history), st.nextSeq)
		}
		if bs, err := st.since(0, 10); err != nil || len(bs) != 0 {
			t.Fatalf("since(0) = %v, %v; want nothing", seqs(bs), err)
		}
	})

	st.startRecording(time.Now())
	if !st.floor.Equal(cur(2, 2)) || !slices.Equal(st.diffFloor, []int64{2, 2}) || st.firstSeq != 1 {
		t.Fatalf("after startRecording: floor %v diffFloor %v firstSeq %d; want [2 2] [2 2] 1", st.floor.Offsets, st.diffFloor, st.firstSeq)
	}

	t.Run("one batch per apply that moves the cursor", func(t *testing.T) {
		steps := []struct {
			recs  []rec
			batch bool
		}{
			{recs(put(0, 2, "c", "1")), true},
			{recs(put(0, 3, "d", "1"), put(1, 2, "e", "1"), del(1, 3, "b")), true},
			{recs(put(0, 1, "old", "1")), false}, // below the cursor
			{recs(put(5, 0, "x", "1")), false},   // partition out of range
			{recs(), false},
			{recs(skip(0, 4, skipBadKey)), true},
			{recs(del(0, 5, "never")), true},
		}
		var got []*Batch
		for i, s := range steps {
			seq := st.nextSeq
			b, _ := st.apply(s.recs, 10+int64(i))
			if !s.batch {
				if b != nil || st.nextSeq != seq {
					t.Fatalf("step %d: batch %v, nextSeq %d; want none, %d", i, b != nil, st.nextSeq, seq)
				}
				continue
			}
			checkBatch(t, st, b, seq)
			got = append(got, b)
		}
		if want := []uint64{1, 2, 3, 4}; !slices.Equal(seqs(got), want) {
			t.Fatalf("Seqs %v, want %v", seqs(got), want)
		}
		all, err := st.since(0, 100)
		if err != nil || !slices.Equal(all, got) {
			t.Fatalf("since(0) = %v, %v; want %v", seqs(all), err, seqs(got))
		}
		if got := showAll(all[1].Changes); !slices.Equal(got, []string{"d=1@0:3", "e=1@1:2", "b=-@1:3"}) {
			t.Fatalf("batch 2 changes %q", got)
		}
	})

	t.Run("since", func(t *testing.T) {
		tests := []struct {
			seq  uint64
			max  int
			want []uint64
		}{
			{0, 100, []uint64{1, 2, 3, 4}},
			{0, 2, []uint64{1, 2}},
			{1, 1, []uint64{2}},
			{2, 100, []uint64{3, 4}},
			{4, 100, []uint64{}}, // the head: nothing new
			{9, 100, []uint64{}},
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%d/%d", tt.seq, tt.max), func(t *testing.T) {
				bs, err := st.since(tt.seq, tt.max)
				if err != nil || !slices.Equal(seqs(bs), tt.want) {
					t.Fatalf("since(%d, %d) = %v, %v; want %v", tt.seq, tt.max, seqs(bs), err, tt.want)
				}
			})
		}
	})
}

// applyOnePerBatch applies n single-put batches on partition 0 from offset
// st.next[0] on, and returns them.
func applyOnePerBatch(t *testing.T, st *state, n int) []*Batch {
	t.Helper()
	var out []*Batch
	for range n {
		off := st.next[0]
		b, _ := st.apply(recs(put(0, off, fmt.Sprintf("k%03d", off), "v")), 0)
		if b == nil {
			t.Fatalf("no batch at offset %d", off)
		}
		out = append(out, b)
	}
	return out
}

func checkWindow(t *testing.T, st *state, all []*Batch, keep int) {
	t.Helper()
	dropped := len(all) - keep
	if !slices.Equal(st.history, all[dropped:]) {
		t.Fatalf("history %v, want %v", seqs(st.history), seqs(all[dropped:]))
	}
	if st.firstSeq != all[dropped].Seq {
		t.Errorf("firstSeq %d, want %d", st.firstSeq, all[dropped].Seq)
	}
	if dropped > 0 && !st.floor.Equal(all[dropped-1].End) {
		t.Errorf("floor %v, want the End of the last dropped batch %v", st.floor.Offsets, all[dropped-1].End.Offsets)
	}
	var size int64
	for _, b := range st.history {
		size += b.size
	}
	if st.historyBytes != size {
		t.Errorf("historyBytes %d, want the sum of held batches %d", st.historyBytes, size)
	}
	head := all[len(all)-1].Seq
	for seq := uint64(0); seq+1 < st.firstSeq; seq++ {
		if bs, err := st.since(seq, 100); !errors.Is(err, ErrHistoryGone) {
			t.Errorf("since(%d) = %v, %v; want ErrHistoryGone", seq, seqs(bs), err)
		}
	}
	for seq := st.firstSeq - 1; seq <= head; seq++ {
		bs, err := st.since(seq, 100)
		want := all[seq+1-all[0].Seq:]
		if err != nil || !slices.Equal(bs, want) {
			t.Errorf("since(%d) = %v, %v; want %v", seq, seqs(bs), err, seqs(want))
		}
	}
	if bs, err := st.since(head, 100); err != nil || bs != nil {
		t.Errorf("since(head) = %v, %v; want nil, nil", seqs(bs), err)
	}
}

func TestTrim(t *testing.T) {
	t.Run("batches", func(t *testing.T) {
		st := newTestState(2, historyLimits{batches: 3, bytes: 1 << 40})
		st.startRecording(time.Now())
		var all []*Batch
		for i := range 7 {
			all = append(all, applyOnePerBatch(t, st, 1)...)
			checkWindow(t, st, all, min(i+1, 3))
		}
		if !st.floor.Equal(cur(4, 0)) {
			t.Fatalf("floor %v, want [4 0]", st.floor.Offsets)
		}
	})

	t.Run("bytes", func(t *testing.T) {
		st := newTestState(1, bigLimits)
		st.startRecording(time.Now())
		one := applyOnePerBatch(t, st, 1)[0].size // every batch here has this size
		st = newTestState(1, historyLimits{batches: 100, bytes: 2*one + one/2})
		st.startRecording(time.Now())
		var all []*Batch
		for i := range 6 {
			all = append(all, applyOnePerBatch(t, st, 1)...)
			checkWindow(t, st, all, min(i+1, 2))
		}
	})

	t.Run("the newest batch is always kept", func(t *testing.T) {
		st := newTestState(1, historyLimits{batches: 1, bytes: 1})
		st.startRecording(time.Now())
		var all []*Batch
		for range 4 {
			all = append(all, applyOnePerBatch(t, st, 1)...)
			checkWindow(t, st, all, 1)
		}
		// A batch larger than the whole budget is still kept.
		big := recs(put(0, st.next[0], "big", string(make([]byte, 4096))))
		b, _ := st.apply(big, 0)
		all = append(all, b)
		checkWindow(t, st, all, 1)
	})
}

func TestSinceAcrossRebuild(t *testing.T) {
	old := newTestState(1, bigLimits)
	old.startRecording(time.Now())
	applyOnePerBatch(t, old, 3)
	head := old.nextSeq - 1 // a reader at the old head

	// Store.install starts the next incarnation one Seq further.
	nw := newState(topicB, []int64{0, 0}, old.nextSeq+1, bigLimits, logTrust{})
	for seq := range head + 1 {
		if _, err := nw.since(seq, 10); !errors.Is(err, ErrRebuilt) {
			t.Fatalf("bootstrapping: since(%d) = %v, want ErrRebuilt", seq, err)
		}
	}
	nw.apply(recs(put(0, 0, "a", "1")), 0)
	nw.startRecording(time.Now())
	for seq := range head + 1 {
		if _, err := nw.since(seq, 10); !errors.Is(err, ErrRebuilt) {
			t.Fatalf("recording: since(%d) = %v, want ErrRebuilt", seq, err)
		}
	}
	snap := nw.snapshot()
	if bs, err := nw.since(snap.Seq, 10); err != nil || len(bs) != 0 {
		t.Fatalf("since(new snapshot %d) = %v, %v; want nothing yet", snap.Seq, seqs(bs), err)
	}
	b, _ := nw.apply(recs(put(1, 0, "b", "1")), 0)
	if bs, err := nw.since(snap.Seq, 10); err != nil || !slices.Equal(bs, []*Batch{b}) {
		t.Fatalf("since(new snapshot %d) = %v, %v; want [%d]", snap.Seq, seqs(bs), err, b.Seq)
	}
}

func TestResume(t *testing.T) {
	// Bootstrap to [1 1], record B1..B5, keep 3 batches:
	//   B1 put c       End [2 1]
	//   B2 put d, e    End [3 2]  <- floor once B1, B2 are trimmed
	//   B3 del a       End [4 2]
	//   B4 put f       End [4 3]
	//   B5 put g, h    End [6 3]
	build := func() *state {
		st := newTestState(2, historyLimits{batches: 3, bytes: 1 << 40})
		st.apply(recs(put(0, 0, "a", "1"), put(1, 0, "b", "1")), 100)
		st.startRecording(time.Now())
		for _, rs := range [][]rec{
			recs(put(0, 1, "c", "1")),
			recs(put(1, 1, "d", "1"), put(0, 2, "e", "1")),
			recs(del(0, 3, "a")),
			recs(put(1, 2, "f", "1")),
			recs(put(0, 4, "g", "1"), put(0, 5, "h", "1")),
		} {
			st.apply(rs, 200)
		}
		if st.firstSeq != 3 || !st.floor.Equal(cur(3, 2)) || !slices.Equal(st.diffFloor, []int64{1, 1}) {
			t.Fatalf("setup: firstSeq %d floor %v diffFloor %v", st.firstSeq, st.floor.Offsets, st.diffFloor)
		}
		return st
	}
	st := build()

	type want struct {
		kind ResumeKind
		seq  uint64
		err  error
	}
	hist := func(seq uint64) want { return want{kind: ResumeHistory, seq: seq} }
	diff := want{kind: ResumeDiff, seq: 5}
	fail := func(err error) want { return want{err: err} }
	tests := []struct {
		name string
		c    cursor.Cursor
		want want
	}{
		{"another topic", cursor.Cursor{Topic: topicB, Offsets: []int64{6, 3}}, fail(ErrTopicChanged)},
		{"ahead on partition 0", cur(7, 3), fail(ErrBehind)},
		{"ahead on partition 1", cur(6, 4), fail(ErrBehind)},
		{"ahead on an unknown partition", cur(6, 3, 1), fail(ErrBehind)},
		{"head", cur(6, 3), hist(5)},
		{"head, extra zero partition", cur(6, 3, 0), hist(5)},
		{"at the floor", cur(3, 2), hist(2)},
		{"at the End of B3", cur(4, 2), hist(3)},
		{"at the End of B4", cur(4, 3), hist(4)},
		{"inside B5", cur(5, 3), hist(4)},
		{"covers B3 but not B4", cur(5, 2), hist(3)},
		{"older than the floor on one partition", cur(3, 1), diff},
		{"older than the floor", cur(2, 1), diff},
		{"at the diff floor", cur(1, 1), diff},
		{"older than the diff floor", cur(0, 1), fail(ErrHistoryGone)},
		{"fewer partitions (made before partitions were added)", cur(6), fail(ErrRebuilt)},
		{"empty cursor", cur(), fail(ErrRebuilt)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kind, seq, err := st.resume(tt.c)
			if tt.want.err != nil {
				if !errors.Is(err, tt.want.err) {
					t.Fatalf("resume = %v, %d, %v; want %v", kind, seq, err, tt.want.err)
				}
				return
			}
			if err != nil || kind != tt.want.kind || seq != tt.want.seq {
				t.Fatalf("resume = %v, %d, %v; want %v, %d", kind, seq, err, tt.want.kind, tt.want.seq)
			}
			if kind != ResumeHistory {
				return
			}
			// The batches after seq start with the first one c does not
			// cover: nothing is missed, and everything before is covered.
			bs, err := st.since(seq, 100)
			if err != nil {
				t.Fatalf("since(%d): %v", seq, err)
			}
			if len(bs) > 0 && tt.c.Covers(bs[0].End) {
				t.Errorf("since(%d) starts with Seq %d, which c already covers", seq, bs[0].Seq)
			}
			if seq >= st.firstSeq && !tt.c.Covers(st.history[seq-st.firstSeq].End) {
				t.Errorf("Seq %d is not covered by c: its changes would be missed", seq)
			}
		})
	}

	t.Run("purged tombstone raises the diff floor", func(t *testing.T) {
		st := build()
		// Everything was applied at 100 (bootstrap) or 200: purge it all.
		if n := st.purgeTombstones(201); n != 1 {
			t.Fatalf("purged %d tombstones, want 1 (a@0:3)", n)
		}
		if !slices.Equal(st.diffFloor, []int64{4, 1}) {
			t.Fatalf("diffFloor %v, want [4 1]", st.diffFloor)
		}
		for _, c := range []cursor.Cursor{cur(2, 1), cur(3, 1), cur(1, 1)} {
			if _, _, err := st.resume(c); !errors.Is(err, ErrHistoryGone) {
				t.Errorf("resume(%v) = %v, want ErrHistoryGone", c.Offsets, err)
			}
		}
		if kind, seq, err := st.resume(cur(4, 1)); err != nil || kind != ResumeDiff || seq != 5 {
			t.Errorf("resume([4 1]) = %v, %d, %v; want ResumeDiff, 5", kind, seq, err)
		}
		if kind, seq, err := st.resume(cur(3, 2)); err != nil || kind != ResumeHistory || seq != 2 {
			t.Errorf("resume(floor) = %v, %d, %v; want ResumeHistory, 2", kind, seq, err)
		}
	})

	t.Run("before recording", func(t *testing.T) {
		st := newTestState(2, bigLimits)
		st.apply(recs(put(0, 0, "a", "1"), put(1, 0, "b", "1")), 0)
		for _, c := range []cursor.Cursor{cur(1, 1), cur(0, 0)} {
			if _, _, err := st.resume(c); !errors.Is(err, ErrHistoryGone) {
				t.Errorf("resume(%v) = %v, want ErrHistoryGone", c.Offsets, err)
			}
		}
		if _, _, err := st.resume(cur(2, 1)); !errors.Is(err, ErrBehind) {
			t.Errorf("resume(ahead) = %v, want ErrBehind", err)
		}
		if _, _, err := st.resume(cursor.Cursor{Topic: topicB}); !errors.Is(err, ErrTopicChanged) {
			t.Errorf("resume(other topic) = %v, want ErrTopicChanged", err)
		}
	})

	t.Run("empty history at the start of recording", func(t *testing.T) {
		st := newTestState(2, bigLimits)
		st.apply(recs(put(0, 0, "a", "1")), 0)
		st.startRecording(time.Now())
		if kind, seq, err := st.resume(cur(1, 0)); err != nil || kind != ResumeHistory || seq != st.nextSeq-1 {
			t.Fatalf("resume(head) = %v, %d, %v; want ResumeHistory, %d", kind, seq, err, st.nextSeq-1)
		}
	})
}

func TestPurgeTombstones(t *testing.T) {
	st := newTestState(2, bigLimits)
	for _, s := range []struct {
		at   int64
		recs []rec
	}{
		{100, recs(del(0, 0, "a"), put(1, 0, "b", "1"))},
		{200, recs(put(0, 1, "c", "1"), del(1, 1, "b"))},
		{300, recs(del(0, 2, "c"), del(0, 3, "x"), del(1, 2, "y"))},
		{400, recs(put(0, 4, "x", "back"))}, // x is live again
		{500, recs(del(1, 3, "y"))},         // y deleted twice: only the newer tombstone counts
	} {
		st.apply(s.recs, s.at)
	}
	// Read while bootstrapping (so deletes of keys never seen, a and the
	// first y, are kept), and every record trusted, as logTrust may allow.
	st.startRecording(time.Now())
	st.diffFloor = []int64{0, 0}
	if got, want := index(st), []string{"a=-@0:0", "b=-@1:1", "c=-@0:2", "x=back@0:4", "y=-@1:3"}; !slices.Equal(got, want) {
		t.Fatalf("setup: index %q, want %q", got, want)
	}
	snap := st.snapshot()

	steps := []struct {
		cutoff    int64
		purged    int
		index     []string
		diffFloor []int64
	}{
		{100, 0, []string{"a=-@0:0", "b=-@1:1", "c=-@0:2", "x=back@0:4", "y=-@1:3"}, []int64{0, 0}}, // strictly older only
		{101, 1, []string{"b=-@1:1", "c=-@0:2", "x=back@0:4", "y=-@1:3"}, []int64{1, 0}},
		{250, 1, []string{"c=-@0:2", "x=back@0:4", "y=-@1:3"}, []int64{1, 2}},
		// c purged (floor past it); x's tombstone was superseded by its
		// later put and y's older one by a newer tombstone, both still in
		// the index, so neither raises the floor.
		{350, 1, []string{"x=back@0:4", "y=-@1:3"}, []int64{3, 2}},
		{450, 0, []string{"x=back@0:4", "y=-@1:3"}, []int64{3, 2}},
		{600, 1, []string{"x=back@0:4"}, []int64{3, 4}},
		{900, 0, []string{"x=back@0:4"}, []int64{3, 4}},
	}
	for _, s := range steps {
		t.Run(fmt.Sprint(s.cutoff), func(t *testing.T) {
			if n := st.purgeTombstones(s.cutoff); n != s.purged {
				t.Errorf("purged %d, want %d", n, s.purged)
			}
			if got := index(st); !slices.Equal(got, s.index) {
				t.Errorf("index %q, want %q", got, s.index)
			}
			if !slices.Equal(st.diffFloor, s.diffFloor) {
				t.Errorf("diffFloor %v, want %v", st.diffFloor, s.diffFloor)
			}
			checkCounts(t, st)
		})
	}
	// The snapshot taken before still holds every tombstone.
	var got []string
	snap.ScanAll(keyspace.Selector{}, func(e *Entry) bool { got = append(got, show(e)); return true })
	if want := []string{"a=-@0:0", "b=-@1:1", "c=-@0:2", "x=back@0:4", "y=-@1:3"}; !slices.Equal(got, want) {
		t.Fatalf("old snapshot %q, want %q", got, want)
	}
	if st.snapshot() == snap {
		t.Fatal("purge did not invalidate the cached snapshot")
	}

	t.Run("while bootstrapping", func(t *testing.T) {
		st := newTestState(1, bigLimits)
		st.apply(recs(del(0, 0, "a"), put(0, 1, "b", "1")), 10)
		if n := st.purgeTombstones(11); n != 1 || st.diffFloor != nil {
			t.Fatalf("purged %d, diffFloor %v; want 1, untouched", n, st.diffFloor)
		}
		st.startRecording(time.Now())
		if !slices.Equal(st.diffFloor, []int64{2}) {
			t.Fatalf("diffFloor %v, want [2]", st.diffFloor)
		}
		checkCounts(t, st)
	})
}

func mustSelector(t *testing.T, prefixes ...string) keyspace.Selector {
	t.Helper()
	sel, err := keyspace.NewSelector(prefixes)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func scanKeys(snap *Snapshot, sel keyspace.Selector, all bool) []string {
	out := []string{}
	fn := func(e *Entry) bool { out = append(out, e.Key); return true }
	if all {
		snap.ScanAll(sel, fn)
	} else {
		snap.Scan(sel, fn)
	}
	return out
}

func TestSnapshot(t *testing.T) {
	st := newTestState(2, bigLimits)
	st.apply(recs(
		put(0, 0, "pay/db/url", "pg://"),
		put(1, 0, "app/b", "b1"),
		put(0, 1, "pay/api", "x"),
		put(1, 1, "app/a", "a1"),
		put(0, 2, "payx/q", "q"),
		put(1, 2, "auth/x", "1"),
		put(0, 3, "pay/db/timeout", "5s"),
		put(0, 4, "billing/y", "y"),
		put(1, 3, "app/gone", "g"),
		del(1, 4, "app/gone"),
		del(0, 5, "pay/old"),
	), 0)
	st.startRecording(time.Now())

	snap := st.snapshot()
	if st.snapshot() != snap {
		t.Fatal("snapshot not cached while the state does not move")
	}
	if !slices.Equal(snap.Cursor.Offsets, []int64{6, 5}) || snap.Cursor.Topic != topicA || snap.Seq != st.nextSeq-1 {
		t.Fatalf("snapshot at %v Seq %d, want [6 5] Seq %d", snap.Cursor.Offsets, snap.Seq, st.nextSeq-1)
	}
	liveKeys := []string{"app/a", "app/b", "auth/x", "billing/y", "pay/api", "pay/db/timeout", "pay/db/url", "payx/q"}

	t.Run("get", func(t *testing.T) {
		e, ok := snap.Get("pay/db/timeout")
		if !ok || show(e) != "pay/db/timeout=5s@0:3" {
			t.Fatalf("Get = %v, %v", e, ok)
		}
		for _, k := range []string{"app/gone", "pay/old", "missing", "pay/db", ""} {
			if e, ok := snap.Get(k); ok {
				t.Errorf("Get(%q) = %s, want absent", k, show(e))
			}
		}
	})

	t.Run("scan", func(t *testing.T) {
		tests := []struct {
			name     string
			prefixes []string
			all      bool // ScanAll
			want     []string
		}{
			{"everything", nil, false, liveKeys},
			{"everything with tombstones", nil, true, []string{"app/a", "app/b", "app/gone", "auth/x", "billing/y", "pay/api", "pay/db/timeout", "pay/db/url", "pay/old", "payx/q"}},
			{"one prefix", []string{"pay/"}, false, []string{"pay/api", "pay/db/timeout", "pay/db/url"}},
			{"prefix is not a path segment", []string{"pay"}, false, []string{"pay/api", "pay/db/timeout", "pay/db/url", "payx/q"}},
			{"two prefixes, key order", []string{"pay/db/", "app/"}, false, []string{"app/a", "app/b", "pay/db/timeout", "pay/db/url"}},
			{"three prefixes", []string{"payx/", "auth/", "billing/"}, false, []string{"auth/x", "billing/y", "payx/q"}},
			{"covered prefix", []string{"pay/", "pay/db/"}, false, []string{"pay/api", "pay/db/timeout", "pay/db/url"}},
			{"exact key", []string{"app/a"}, false, []string{"app/a"}},
			{"nothing matches", []string{"zzz/", "a/"}, false, []string{}},
			{"tombstones excluded", []string{"app/"}, false, []string{"app/a", "app/b"}},
			{"tombstones included", []string{"app/", "pay/o"}, true, []string{"app/a", "app/b", "app/gone", "pay/old"}},
			{"only a tombstone", []string{"pay/old"}, false, []string{}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := scanKeys(snap, mustSelector(t, tt.prefixes...), tt.all)
				if !slices.Equal(got, tt.want) {
					t.Fatalf("keys %q, want %q", got, tt.want)
				}
			})
		}
	})

	t.Run("scan stops when fn returns false", func(t *testing.T) {
		for _, prefixes := range [][]string{nil, {"app/", "pay/"}} {
			var got []string
			snap.Scan(mustSelector(t, prefixes...), func(e *Entry) bool {
				got = append(got, e.Key)
				return len(got) < 2
			})
			if !slices.Equal(got, []string{"app/a", "app/b"}) {
				t.Errorf("%q: visited %q, want the first two then stop", prefixes, got)
			}
		}
	})

	t.Run("copy on write", func(t *testing.T) {
		before := scanKeys(snap, keyspace.Selector{}, true)
		st.apply(recs(
			put(1, 5, "app/a", "a2"),
			del(1, 6, "auth/x"),
			put(1, 7, "app/c", "c1"),
			put(0, 6, "app/gone", "back"),
			del(0, 7, "pay/db/url"),
		), 1)
		// Enough more keys to split the B-tree's nodes.
		var more []rec
		for i := range 200 {
			more = append(more, put(0, int64(8+i), fmt.Sprintf("bulk/%03d", i), "v"))
		}
		st.apply(more, 1)
		st.purgeTombstones(2)

		if got := scanKeys(snap, keyspace.Selector{}, true); !slices.Equal(got, before) {
			t.Fatalf("old snapshot changed: %q, want %q", got, before)
		}
		if e, ok := snap.Get("app/a"); !ok || show(e) != "app/a=a1@1:1" {
			t.Errorf("old snapshot Get(app/a) = %v", ok)
		}
		if _, ok := snap.Get("auth/x"); !ok {
			t.Error("old snapshot lost auth/x")
		}
		for _, k := range []string{"app/c", "app/gone", "bulk/000"} {
			if _, ok := snap.Get(k); ok {
				t.Errorf("old snapshot shows %s, applied after it", k)
			}
		}
		if !slices.Equal(snap.Cursor.Offsets, []int64{6, 5}) {
			t.Errorf("old snapshot cursor moved to %v", snap.Cursor.Offsets)
		}

		now := st.snapshot()
		if now == snap || now.Seq != st.nextSeq-1 || !now.Cursor.Equal(st.cursor()) {
			t.Fatalf("new snapshot Seq %d at %v, want Seq %d at %v", now.Seq, now.Cursor.Offsets, st.nextSeq-1, st.cursor().Offsets)
		}
		if e, ok := now.Get("app/a"); !ok || show(e) != "app/a=a2@1:5" {
			t.Errorf("new snapshot Get(app/a) = %v", ok)
		}
		if got := scanKeys(now, mustSelector(t, "app/", "auth/"), false); !slices.Equal(got, []string{"app/a", "app/b", "app/c", "app/gone"}) {
			t.Errorf("new snapshot app/ auth/: %q", got)
		}
		if got := len(scanKeys(now, mustSelector(t, "bulk/"), false)); got != 200 {
			t.Errorf("new snapshot has %d bulk keys, want 200", got)
		}
		if got := scanKeys(now, keyspace.Selector{}, false); !slices.IsSorted(got) {
			t.Errorf("scan not in key order: %q", got)
		}
	})
}

// While bootstrapping, a delete of a key the index does not hold is kept:
// compaction may have removed the put under a resuming reader's cursor.
func TestDeleteAbsentWhileBootstrapping(t *testing.T) {
	st := newTestState(1, bigLimits)
	st.apply(recs(del(0, 0, "a")), 1)
	st.startRecording(time.Now())
	st.apply(recs(del(0, 1, "b")), 2)
	if got, want := index(st), []string{"a=-@0:0"}; !slices.Equal(got, want) {
		t.Fatalf("index %q, want %q", got, want)
	}
	checkCounts(t, st)
}

// The tombstone limits forget the oldest tombstones first, in count and in
// bytes, and raise the diff floor past them, so a resume from before them
// gets a snapshot rather than a diff that would miss the delete.
func TestTombstoneLimits(t *testing.T) {
	size := (&Entry{Key: "k0"}).Size() // every key below is this long
	tests := []struct {
		name      string
		lim       historyLimits
		index     []string
		diffFloor []int64
	}{
		{"unbounded", historyLimits{batches: 100, bytes: 1 << 40}, []string{"k0=-@0:4", "k1=-@0:5", "k2=-@1:4", "k3=-@1:5", "x=1@0:6"}, []int64{4, 4}},
		{"count", historyLimits{batches: 100, bytes: 1 << 40, tombs: 2}, []string{"k1=-@0:5", "k3=-@1:5", "x=1@0:6"}, []int64{5, 5}},
		{"bytes", historyLimits{batches: 100, bytes: 1 << 40, tombBytes: 3 * size}, []string{"k1=-@0:5", "k2=-@1:4", "k3=-@1:5", "x=1@0:6"}, []int64{5, 4}},
		{"both, count first", historyLimits{batches: 100, bytes: 1 << 40, tombs: 1, tombBytes: 3 * size}, []string{"k3=-@1:5", "x=1@0:6"}, []int64{6, 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newTestState(2, tt.lim)
			st.apply(recs(put(0, 0, "k0", "v"), put(0, 1, "k1", "v"), put(1, 0, "k2", "v"), put(1, 1, "k3", "v"),
				put(0, 2, "pad", "v"), put(0, 3, "pad", "w"), put(1, 2, "pad2", "v"), put(1, 3, "pad2", "w")), 1)
			st.startRecording(time.Now())
			st.apply(recs(del(0, 4, "k0")), 2)
			st.purgeTombstones(0)
			st.apply(recs(del(1, 4, "k2"), del(0, 5, "k1")), 3)
			st.purgeTombstones(0)
			st.apply(recs(del(1, 5, "k3"), put(0, 6, "x", "1"), del(1, 6, "never-held")), 4)
			st.purgeTombstones(0)
			var got []string
			for _, e := range index(st) {
				if !strings.HasPrefix(e, "pad") {
					got = append(got, e)
				}
			}
			if !slices.Equal(got, tt.index) {
				t.Errorf("index %q, want %q", got, tt.index)
			}
			if !slices.Equal(st.diffFloor, tt.diffFloor) {
				t.Errorf("diffFloor %v, want %v", st.diffFloor, tt.diffFloor)
			}
			if over := st.overTombLimits(); over {
				t.Errorf("still over the limits: %d tombstones, %d bytes", st.tombs, st.tombBytes)
			}
			checkCounts(t, st)
		})
	}
}

// ScanAfter is Scan from the first key greater than after, for every kind
// of selector, including afters inside, between and past the prefixes.
func TestScanAfter(t *testing.T) {
	st := newTestState(1, bigLimits)
	for i, k := range []string{"a/1", "a/2", "b/1", "b/2", "c/1"} {
		st.apply(recs(put(0, int64(i), k, "v")), 1)
	}
	snap := st.snapshot()
	for _, tc := range []struct {
		prefixes []string
		after    string
		want     string
	}{
		{nil, "", "[a/1 a/2 b/1 b/2 c/1]"},
		{nil, "a/2", "[b/1 b/2 c/1]"},
		{nil, "a/15", "[a/2 b/1 b/2 c/1]"},
		{nil, "c/1", "[]"},
		{[]string{"a/", "c/"}, "", "[a/1 a/2 c/1]"},
		{[]string{"a/", "c/"}, "a/1", "[a/2 c/1]"},
		{[]string{"a/", "c/"}, "a/2", "[c/1]"},
		{[]string{"a/", "c/"}, "b/9", "[c/1]"},
		{[]string{"a/", "c/"}, "0", "[a/1 a/2 c/1]"},
		{[]string{"b/"}, "z", "[]"},
	} {
		var got []string
		snap.ScanAfter(mustSelector(t, tc.prefixes...), tc.after, func(e *Entry) bool { got = append(got, e.Key); return true })
		if fmt.Sprint(got) != tc.want && !(len(got) == 0 && tc.want == "[]") {
			t.Errorf("ScanAfter(%q, %q) = %v, want %s", tc.prefixes, tc.after, got, tc.want)
		}
	}
}
