package gateway

import (
	"testing"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/store"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// The group memo keeps the encoded deltas of the newest memoBatches
// batches: a batch is encoded once while it is held, the oldest is the one
// evicted, and the memo never grows past its bound.
func TestGroupMemoKeepsNewestBatches(t *testing.T) {
	g := &Gateway{cfg: Config{ChunkBytes: 1 << 20}, m: newMetrics(nil), cache: &payloadCache{}}
	grp := &group{sel: keyspace.Selector{}, memo: map[uint64]*memoFrames{}}
	topic := cursor.TopicID{1}
	batch := func(seq uint64) *store.Batch {
		end := cursor.Cursor{Topic: topic, Offsets: []int64{int64(seq)}}
		return &store.Batch{Seq: seq, End: end, EndBytes: end.Encode(),
			Changes: []*store.Entry{{Key: "k", Value: []byte("v"), Offset: int64(seq) - 1}}}
	}
	const n = memoBatches + 10
	for seq := uint64(1); seq <= n; seq++ {
		if f := grp.frames(g, batch(seq), cursor.Cursor{Topic: topic, Offsets: []int64{int64(seq) - 1}}); len(f) != 1 {
			t.Fatalf("batch %d: %d frames, want 1", seq, len(f))
		}
	}
	if len(grp.memo) != memoBatches {
		t.Fatalf("memo holds %d batches, want %d", len(grp.memo), memoBatches)
	}
	for _, seq := range []uint64{1, 10} {
		if _, ok := grp.memo[seq]; ok {
			t.Fatalf("batch %d still held: the oldest must go first", seq)
		}
	}
	encoded := counterValue(t, g.m.encDelta)
	for seq := uint64(11); seq <= n; seq++ {
		grp.frames(g, batch(seq), cursor.Cursor{Topic: topic, Offsets: []int64{int64(seq) - 1}})
	}
	if got := counterValue(t, g.m.encDelta); got != encoded {
		t.Fatalf("held batches were encoded again: %v encodes, want %v", got, encoded)
	}
	if hits := counterValue(t, g.m.hitDelta); hits != memoBatches {
		t.Fatalf("%v memo hits, want %d", hits, memoBatches)
	}
}
