package store

import (
	"fmt"
	"testing"
	"time"
)

// r builds a record of partition p at offset off, in set id (count n;
// n 0: no set).
func setRec(p int32, off int64, id string, i, n int) rec {
	r := rec{part: p, off: off, entry: &Entry{Key: fmt.Sprintf("k%d-%d", p, off)}}
	if n > 0 {
		r.set = SetMark{Index: i, Count: n, ID: id}
	}
	return r
}

func offsets(rs []rec) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%d:%d", r.part, r.off)
	}
	return out
}

func TestAssemblerHoldsSetsUntilWhole(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name string
		// steps: records added, then released; want the offsets released
		// after each step.
		steps [][]rec
		want  [][]string
	}{
		{
			name:  "plain records pass",
			steps: [][]rec{{setRec(0, 1, "", 0, 0), setRec(1, 1, "x", 0, 1)}},
			want:  [][]string{{"0:1", "1:1"}},
		},
		{
			name: "a set across partitions waits for its last record, and holds what follows it",
			steps: [][]rec{
				{setRec(0, 5, "a", 0, 2), setRec(0, 6, "", 0, 0), setRec(1, 3, "", 0, 0)},
				{setRec(1, 4, "a", 1, 2)},
			},
			want: [][]string{{"1:3"}, {"0:5", "0:6", "1:4"}},
		},
		{
			name: "a complete set behind an incomplete one waits for it",
			steps: [][]rec{
				// X = {p0:1, p2:1}, A = {p0:2, p1:1}: A is whole first, but
				// sits behind X in partition 0.
				{setRec(0, 1, "x", 0, 2), setRec(0, 2, "a", 0, 2), setRec(1, 1, "a", 1, 2)},
				{setRec(2, 1, "x", 1, 2)},
			},
			want: [][]string{nil, {"0:1", "0:2", "1:1", "2:1"}},
		},
		{
			name: "a foreign record inside a set's run stays in log order",
			steps: [][]rec{
				{setRec(0, 1, "a", 0, 3), setRec(0, 2, "", 0, 0), setRec(0, 3, "a", 1, 3)},
				{setRec(1, 7, "a", 2, 3)},
			},
			want: [][]string{nil, {"0:1", "0:2", "0:3", "1:7"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAssembler(3, time.Hour, 1<<30)
			for i, step := range tt.steps {
				var out []rec
				for _, r := range step {
					out = a.add(r, t0, out)
				}
				out = a.release(t0, out)
				if got := offsets(out); fmt.Sprint(got) != fmt.Sprint(tt.want[i]) && !(len(got) == 0 && len(tt.want[i]) == 0) {
					t.Fatalf("step %d released %v, want %v", i, got, tt.want[i])
				}
			}
			if a.held != 0 || len(a.sets) != 0 || a.bytes != 0 {
				t.Fatalf("left held=%d sets=%d bytes=%d", a.held, len(a.sets), a.bytes)
			}
		})
	}
}

func TestAssemblerGivesUpForgedSets(t *testing.T) {
	t0 := time.Unix(1000, 0)
	t.Run("after the hold time", func(t *testing.T) {
		a := newAssembler(2, 15*time.Second, 1<<30)
		out := a.add(setRec(0, 1, "forged", 0, 3), t0, nil)
		out = a.add(setRec(0, 2, "", 0, 0), t0, out)
		out = a.add(setRec(1, 1, "", 0, 0), t0, out)
		if got := offsets(a.release(t0.Add(14*time.Second), out)); fmt.Sprint(got) != "[1:1]" {
			t.Fatalf("before the hold time: %v", got)
		}
		got := a.release(t0.Add(15*time.Second), nil)
		if fmt.Sprint(offsets(got)) != "[0:1 0:2]" || a.broken != 1 {
			t.Fatalf("after it: %v, broken %d", offsets(got), a.broken)
		}
		if got[0].set.Count != 0 {
			t.Fatalf("a given-up set's records must flow as plain: %+v", got[0].set)
		}
		if a.held != 0 || len(a.sets) != 0 {
			t.Fatalf("left held=%d sets=%d", a.held, len(a.sets))
		}
	})
	t.Run("over the byte bound, the oldest first", func(t *testing.T) {
		a := newAssembler(2, time.Hour, 250)
		out := a.add(setRec(0, 1, "old", 0, 2), t0, nil)
		out = a.add(setRec(1, 1, "new", 0, 2), t0.Add(time.Second), out)
		out = a.add(setRec(0, 2, "", 0, 0), t0.Add(time.Second), out)
		got := a.release(t0.Add(2*time.Second), out)
		if fmt.Sprint(offsets(got)) != "[0:1 0:2]" || a.broken != 1 {
			t.Fatalf("released %v, broken %d", offsets(got), a.broken)
		}
		if a.held != 1 {
			t.Fatalf("the newer set should still wait: held %d", a.held)
		}
	})
}

func TestOpenSetsCutsOnlyBetweenSets(t *testing.T) {
	recs := []rec{setRec(0, 1, "a", 0, 2), setRec(0, 2, "", 0, 0), setRec(1, 1, "a", 1, 2), setRec(1, 2, "", 0, 0)}
	o := openSets{}
	var closed []bool
	for i := range recs {
		closed = append(closed, o.note(&recs[i]))
	}
	if fmt.Sprint(closed) != "[false false true true]" {
		t.Fatalf("closed after each: %v", closed)
	}
}
