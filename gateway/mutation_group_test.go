package gateway

import (
	"fmt"
	"testing"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"google.golang.org/protobuf/proto"
)

// Tests written for mutants of group.go that lived (docs/testing.md,
// "Mutation score").

// A group is shared by every subscriber of its selector and lives until
// the last of them releases it: a release that is not the last keeps the
// group (and its memo) for the others.
func TestGroupRefCounting(t *testing.T) {
	m := newMetrics(nil)
	var gs groups
	sel := mustSelector(t, "a/")
	g1 := gs.acquire(sel)
	g2 := gs.acquire(sel)
	if g1 != g2 {
		t.Fatal("two subscribers of one selector got different groups")
	}
	if g1.refs != 2 {
		t.Fatalf("refs %d after two acquires, want 2", g1.refs)
	}
	g1.memo[5] = &memoFrames{grp: g1, seq: 5}
	gs.release(g1, m)
	if gs.len() != 1 {
		t.Fatalf("%d groups after one of two subscribers left, want 1", gs.len())
	}
	if _, ok := g1.memo[5]; !ok {
		t.Fatal("the memo was dropped while a subscriber still uses the group")
	}
	if g3 := gs.acquire(sel); g3 != g1 {
		t.Fatal("a new subscriber did not join the existing group")
	}
	gs.release(g1, m)
	gs.release(g1, m)
	if gs.len() != 0 {
		t.Fatalf("%d groups after every subscriber left, want 0", gs.len())
	}
	if len(g1.memo) != 0 {
		t.Fatalf("memo keeps %d batches after the last release", len(g1.memo))
	}
}

// The ring evicts a batch only once memoBatches newer ones came in,
// whatever the batch's seq, 0 included: until the ring is full nothing is
// evicted.
func TestGroupMemoRingNotFullEvictsNothing(t *testing.T) {
	g := &Gateway{cfg: Config{ChunkBytes: 1 << 20}, m: newMetrics(nil), cache: &payloadCache{}}
	grp := &group{sel: keyspace.Selector{}, memo: map[uint64]*memoFrames{}}
	topic := cursor.TopicID{1}
	batch := func(seq uint64) *store.Batch {
		end := cursor.Cursor{Topic: topic, Offsets: []int64{int64(seq) + 1}}
		return &store.Batch{Seq: seq, End: end, EndBytes: end.Encode(),
			Changes: []*store.Entry{{Key: "k", Value: []byte("v"), Offset: int64(seq)}}}
	}
	prev := func(seq uint64) cursor.Cursor { return cursor.Cursor{Topic: topic, Offsets: []int64{int64(seq)}} }
	for seq := uint64(0); seq < 3; seq++ {
		grp.frames(g, batch(seq), prev(seq))
	}
	for seq := uint64(0); seq < 3; seq++ {
		if _, ok := grp.memo[seq]; !ok {
			t.Fatalf("batch %d evicted from a memo holding 3 of %d", seq, memoBatches)
		}
	}
	if grp.full {
		t.Fatal("ring full after 3 batches")
	}
}

// The budget counts an entry once, at its frames' capacity plus the
// overheads, and never counts one that already left its group's memo.
func TestMemoBudgetAdd(t *testing.T) {
	m := newMetrics(nil)
	grp := &group{memo: map[uint64]*memoFrames{}}
	frames := []*frame{{b: make([]byte, 10, 100)}, {b: make([]byte, 0, 7)}}
	want := int64(memoEntryOverhead + 100 + memoFrameOverhead + 7 + memoFrameOverhead)

	var mb memoBudget
	mf := &memoFrames{grp: grp, seq: 1, frames: frames, filled: true}
	grp.memo[1] = mf
	mb.add(mf, 1<<20, m)
	if mf.size != want || mb.bytes != want {
		t.Fatalf("entry size %d, budget %d; want %d", mf.size, mb.bytes, want)
	}
	mb.add(mf, 1<<20, m) // counted already: no change
	if mb.bytes != want || mb.order.Len() != 1 {
		t.Fatalf("adding a counted entry again: budget %d over %d entries, want %d over 1", mb.bytes, mb.order.Len(), want)
	}
	if got := gaugeValue(t, m.memoBytes); int64(got) != want {
		t.Fatalf("gauge %v, want %d", got, want)
	}

	// Left the memo before it was counted (ring eviction, release while
	// being filled): never counted.
	gone := &memoFrames{grp: grp, seq: 2, frames: frames, filled: true}
	mb.forget(gone, m)
	mb.add(gone, 1<<20, m)
	if gone.elem != nil || mb.bytes != want || mb.order.Len() != 1 {
		t.Fatalf("a forgotten entry was counted: budget %d over %d entries", mb.bytes, mb.order.Len())
	}
}

// A memo exactly at its limit keeps everything; one byte over drops the
// oldest entry.
func TestMemoBudgetAtTheLimit(t *testing.T) {
	m := newMetrics(nil)
	grp := &group{memo: map[uint64]*memoFrames{}}
	entry := func(seq uint64) *memoFrames {
		mf := &memoFrames{grp: grp, seq: seq, frames: []*frame{{b: make([]byte, 0, 60)}}, filled: true}
		grp.memo[seq] = mf
		return mf
	}
	const size = memoEntryOverhead + 60 + memoFrameOverhead
	var mb memoBudget
	mb.add(entry(1), 2*size, m)
	mb.add(entry(2), 2*size, m)
	if mb.order.Len() != 2 || mb.bytes != 2*size || len(grp.memo) != 2 {
		t.Fatalf("at the limit: %d entries counted (%d bytes), %d in the memo; want 2, %d, 2", mb.order.Len(), mb.bytes, len(grp.memo), 2*size)
	}
	mb.add(entry(3), 3*size-1, m)
	if mb.order.Len() != 2 || mb.bytes != 2*size {
		t.Fatalf("one byte over: %d entries counted (%d bytes), want 2 (%d)", mb.order.Len(), mb.bytes, 2*size)
	}
	if _, ok := grp.memo[1]; ok {
		t.Fatal("the oldest entry is still in the memo after it was dropped")
	}
	if got := counterValue(t, m.memoDropped); got != 1 {
		t.Fatalf("%v drops counted, want 1", got)
	}
}

// deltaFrames cuts a batch's delta between records only when the next
// record would take it past ChunkBytes: a delta exactly at ChunkBytes is
// one message, a single record larger than ChunkBytes is one message of
// its own, and no message is ever empty. Each part carries the cursor
// after its last record.
func TestDeltaFramesCuts(t *testing.T) {
	g := memoGateway(1 << 20)
	topic := cursor.TopicID{3}
	prev := cursor.Cursor{Topic: topic, Offsets: []int64{10}}
	entries := []*store.Entry{
		{Key: "a", Value: []byte("1111"), Offset: 10},
		{Key: "b", Value: []byte("2222"), Offset: 11},
		{Key: "c", Value: []byte("3333"), Offset: 12},
	}
	var sizes []int
	for _, e := range entries {
		eb, ok := g.encoded(e)
		if !ok {
			t.Fatal("cannot encode")
		}
		sizes = append(sizes, len(changeField(eb, false)))
	}
	one := sizes[0] // all three have the same size
	end := cursor.Cursor{Topic: topic, Offsets: []int64{13}}
	b := &store.Batch{Seq: 1, Changes: entries, End: end, EndBytes: end.Encode()}
	for _, tc := range []struct {
		name  string
		chunk int
		want  []string // per frame: keys, then the cursor's offset
	}{
		{"all fit", 1 << 20, []string{"abc@13"}},
		{"exactly three", 3 * one, []string{"abc@13"}},
		{"one byte short of three", 3*one - 1, []string{"ab@12", "c@13"}},
		{"exactly two", 2 * one, []string{"ab@12", "c@13"}},
		{"exactly one", one, []string{"a@11", "b@12", "c@13"}},
		{"each larger than a chunk", one - 1, []string{"a@11", "b@12", "c@13"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g.cfg.ChunkBytes = tc.chunk
			var got []string
			for _, f := range g.deltaFrames(b, prev, keyspace.Selector{}, nil) {
				var resp confgatev1.SubscribeResponse
				if err := proto.Unmarshal(f.b, &resp); err != nil {
					t.Fatal(err)
				}
				d := resp.GetDelta()
				s := ""
				for _, c := range d.GetChanges() {
					s += c.GetPut().GetKey()
				}
				c, err := cursor.Decode(d.GetCursor())
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, fmt.Sprintf("%s@%d", s, c.Offsets[0]))
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("frames %v, want %v", got, tc.want)
			}
		})
	}
}

// With a floor (a resume cursor), every cursor sent is raised to it, also
// those of the parts of a delta cut in between, and changes below it are
// left out.
func TestDeltaFramesCutsRaisedToTheFloor(t *testing.T) {
	g := memoGateway(1 << 20)
	topic := cursor.TopicID{3}
	prev := cursor.Cursor{Topic: topic, Offsets: []int64{0, 0}}
	b := &store.Batch{Seq: 1, Changes: []*store.Entry{
		{Key: "a", Value: []byte("1111"), Partition: 0, Offset: 0},
		{Key: "x", Value: []byte("seen"), Partition: 1, Offset: 0},
		{Key: "b", Value: []byte("2222"), Partition: 0, Offset: 1},
	}}
	b.End = cursor.Cursor{Topic: topic, Offsets: []int64{2, 1}}
	b.EndBytes = b.End.Encode()
	floor := cursor.Cursor{Topic: topic, Offsets: []int64{0, 5}}
	g.cfg.ChunkBytes = 1 // one record per part
	var got []string
	for _, f := range g.deltaFrames(b, prev, keyspace.Selector{}, &floor) {
		var resp confgatev1.SubscribeResponse
		if err := proto.Unmarshal(f.b, &resp); err != nil {
			t.Fatal(err)
		}
		s := ""
		for _, c := range resp.GetDelta().GetChanges() {
			s += c.GetPut().GetKey()
		}
		c, err := cursor.Decode(resp.GetDelta().GetCursor())
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprint(s, c.Offsets))
	}
	if want := []string{"a[1 5]", "b[2 5]"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("frames %v, want %v", got, want)
	}
}

// The smallest changes (a one-byte key deleted, a one-byte key put with
// an empty value) encode as deltas like any other.
func TestDeltaOfTheSmallestChanges(t *testing.T) {
	g := memoGateway(1 << 20)
	topic := cursor.TopicID{3}
	prev := cursor.Cursor{Topic: topic, Offsets: []int64{0}}
	end := cursor.Cursor{Topic: topic, Offsets: []int64{2}}
	b := &store.Batch{Seq: 1, End: end, EndBytes: end.Encode(), Changes: []*store.Entry{
		{Key: "a", Deleted: true, Offset: 0},
		{Key: "b", Offset: 1},
	}}
	fs := g.deltaFrames(b, prev, keyspace.Selector{}, nil)
	if len(fs) != 1 {
		t.Fatalf("%d frames, want 1", len(fs))
	}
	var resp confgatev1.SubscribeResponse
	if err := proto.Unmarshal(fs[0].b, &resp); err != nil {
		t.Fatal(err)
	}
	ch := resp.GetDelta().GetChanges()
	if len(ch) != 2 || ch[0].GetDelete().GetKey() != "a" || ch[1].GetPut().GetKey() != "b" || len(ch[1].GetPut().GetValue()) != 0 {
		t.Fatalf("delta %v, want delete a, put b=\"\"", ch)
	}
}

// cursorAfter extends the cursor to a partition it did not have yet, the
// one right after its last included.
func TestCursorAfterGrows(t *testing.T) {
	topic := cursor.TopicID{3}
	prev := cursor.Cursor{Topic: topic, Offsets: []int64{4}}
	got := cursorAfter(prev, []*store.Entry{{Key: "a", Partition: 1, Offset: 7}, {Key: "b", Partition: 3, Offset: 2}, {Key: "c", Partition: 0, Offset: 2}})
	if want := []int64{4, 8, 0, 3}; fmt.Sprint(got.Offsets) != fmt.Sprint(want) {
		t.Fatalf("cursor %v, want %v", got.Offsets, want)
	}
	if fmt.Sprint(prev.Offsets) != "[4]" {
		t.Fatalf("prev changed to %v", prev.Offsets)
	}
}

// coalesced fits a delta whose changes, cursor and 4 bytes of framing
// are exactly the limit, and refuses one byte less; changes alone past the
// limit are refused whatever the cursor.
func TestCoalescedLimit(t *testing.T) {
	g := memoGateway(1 << 20)
	latest := map[string]*store.Entry{
		"b": {Key: "b", Value: []byte("2222"), Offset: 1},
		"a": {Key: "a", Value: []byte("1111"), Offset: 0},
	}
	end := cursor.Cursor{Topic: cursor.TopicID{3}, Offsets: []int64{2}}.Encode()
	var body int
	for _, k := range []string{"a", "b"} {
		eb, _ := g.encoded(latest[k])
		body += len(changeField(eb, false))
	}
	exact := body + len(end) + 4
	for _, tc := range []struct {
		limit int
		fits  bool
	}{
		{exact, true},
		{exact - 1, false},
		{body, false},
		{body - 1, false},
		{1 << 20, true},
	} {
		f, fits := g.coalesced(latest, end, tc.limit)
		if fits != tc.fits {
			t.Fatalf("limit %d (changes %d, cursor %d bytes): fits %v, want %v", tc.limit, body, len(end), fits, tc.fits)
		}
		if !fits {
			continue
		}
		var resp confgatev1.SubscribeResponse
		if err := proto.Unmarshal(f.b, &resp); err != nil {
			t.Fatal(err)
		}
		d := resp.GetDelta()
		if !d.GetCoalesced() || len(d.GetChanges()) != 2 || d.GetChanges()[0].GetPut().GetKey() != "a" || d.GetChanges()[1].GetPut().GetKey() != "b" {
			t.Fatalf("coalesced delta %v, want a then b, coalesced", d)
		}
	}
}
