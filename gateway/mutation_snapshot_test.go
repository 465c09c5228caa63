package gateway

import "testing"

// Tests written for mutants of snapshot.go that lived (docs/testing.md,
// "Mutation score").

// A cached chunk costs its strings, its frame's capacity and 128 bytes
// of overhead.
func TestSnapChunkCost(t *testing.T) {
	for _, tc := range []struct {
		c    snapChunk
		want int64
	}{
		{snapChunk{key: "sel|1|0", next: "k9", last: true}, 7 + 0 + 2 + 128},
		{snapChunk{key: "sel|1|1", after: "k9", next: "k99", f: &frame{b: make([]byte, 5, 300)}}, 7 + 2 + 3 + 128 + 300},
	} {
		if got := tc.c.cost(); got != tc.want {
			t.Fatalf("cost of %+v: %d, want %d", tc.c, got, tc.want)
		}
	}
}
