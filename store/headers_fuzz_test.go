package store

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// FuzzParseMarks feeds the change-set and precondition headers any
// producer could write: parsing never panics, and what is accepted
// prints back to the same value.
func FuzzParseMarks(f *testing.F) {
	f.Add([]byte("0/3:abc"), "0:42")
	f.Add([]byte("2/3:g-0011"), "absent")
	f.Add([]byte("3/3:x"), "-1:5")
	f.Add([]byte("0/1001:x"), "1:")
	f.Add([]byte("/:"), "99999999999:1")
	f.Fuzz(func(t *testing.T, set []byte, cond string) {
		if m, ok := ParseSetMark(set); ok {
			if m.Index < 0 || m.Index >= m.Count || m.Count > MaxSetOps || m.ID == "" {
				t.Fatalf("accepted %+v", m)
			}
			if back, ok := ParseSetMark([]byte(m.String())); !ok || back != m {
				t.Fatalf("%+v prints as %q, which parses to %+v %v", m, m.String(), back, ok)
			}
		}
		if c, err := ParseCond(cond); err == nil {
			if c.Kind == CondVersion && (c.Partition < 0 || c.Offset < 0) {
				t.Fatalf("accepted %+v", c)
			}
			if back, err := ParseCond(c.String()); err != nil || back != c {
				t.Fatalf("%+v prints as %q, which parses to %+v %v", c, c.String(), back, err)
			}
		}
	})
}

// FuzzAssembler feeds the set assembler records with any change-set
// headers (forged, partial, repeated IDs, cycles) and checks that nothing
// is lost, duplicated or reordered within a partition, and that once the
// hold time passes everything has been released.
func FuzzAssembler(f *testing.F) {
	f.Add([]byte{0, 1, 2, 1, 0, 2, 2, 2, 2})
	f.Add([]byte{0, 0x12, 1, 0x12, 0, 0x23, 2, 0x21})
	f.Fuzz(func(t *testing.T, ops []byte) {
		const parts = 3
		a := newAssembler(parts, time.Second, 1<<20)
		t0 := time.Unix(1000, 0)
		next := make([]int64, parts)
		var out []rec
		for i := 0; i+1 < len(ops); i += 2 {
			p := int32(ops[i] % parts)
			b := ops[i+1]
			r := rec{part: p, off: next[p], entry: &Entry{Key: fmt.Sprint(p, next[p])}}
			next[p]++
			if n := int(b>>4) % 4; n > 0 {
				r.set = SetMark{Index: int(b&3) % n, Count: n, ID: fmt.Sprint("s", b&0x0c)}
			}
			out = a.add(r, t0, out)
			if b&0x80 != 0 {
				out = a.release(t0, out)
			}
		}
		out = a.release(t0.Add(time.Hour), out)
		if a.held != 0 || len(a.sets) != 0 || a.bytes != 0 {
			t.Fatalf("after the hold time: held %d, sets %d, bytes %d", a.held, len(a.sets), a.bytes)
		}
		got := make([][]int64, parts)
		for _, r := range out {
			got[r.part] = append(got[r.part], r.off)
		}
		for p := range parts {
			want := make([]int64, next[p])
			for i := range want {
				want[i] = int64(i)
			}
			if !slices.Equal(got[p], want) {
				t.Fatalf("partition %d released %v, want %v", p, got[p], want)
			}
		}
	})
}
