package gateway

import (
	"fmt"
	"testing"
	"time"
)

// Per-principal state is bounded whatever names callers present: an entry
// with no stream and a full write bucket is dropped, on release or at the
// next sweep, and the map is rebuilt so its memory goes too. Entries in
// use are kept, so dropping one never changes a decision.
func TestPrincipalLimitsForgetIdle(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	pl := &principalLimits{maxStreams: 2, writeRate: 1, rate: 1, burst: 10, now: func() time.Time { return now },
		m: map[string]*principalUse{}, sweepAt: minSweep}

	// A stream's entry goes when its last stream ends (the bucket is full).
	if !pl.acquireStream("s") || !pl.acquireStream("s") || pl.acquireStream("s") {
		t.Fatal("stream bound of 2 not applied")
	}
	pl.releaseStream("s")
	if !pl.acquireStream("s") {
		t.Fatal("a released stream was not given back")
	}
	pl.releaseStream("s")
	pl.releaseStream("s")
	if n := pl.entries(); n != 0 {
		t.Fatalf("%d entries after every stream ended, want 0", n)
	}

	// Writers: many names, each one write; plus one holding a stream and
	// one that drained its bucket.
	pl.acquireStream("streaming")
	for range 10 {
		pl.allowWrite("drained")
	}
	if pl.allowWrite("drained") {
		t.Fatal("write past the burst allowed")
	}
	for i := range 3 * minSweep {
		if !pl.allowWrite(fmt.Sprint("w", i)) {
			t.Fatal("a first write refused")
		}
	}
	if n := pl.entries(); n > 3*minSweep+2 {
		t.Fatalf("%d entries", n)
	}
	// 10 s later every one-write bucket is full again: the next new name
	// sweeps them; the streaming principal stays. "drained" refilled too
	// (10 s at 1/s), so it is idle and goes: the same as a fresh entry.
	now = now.Add(10 * time.Second)
	for i := range minSweep {
		pl.allowWrite(fmt.Sprint("x", i))
	}
	if n := pl.entries(); n > minSweep+1 {
		t.Fatalf("%d entries after the idle ones were swept, want at most %d", n, minSweep+1)
	}
	if pl.m["streaming"] == nil || pl.m["streaming"].streams != 1 {
		t.Fatal("the entry of a principal with an open stream was dropped")
	}
	// A principal that is still refilling keeps its state.
	for range 10 {
		pl.allowWrite("y")
	}
	now = now.Add(5 * time.Second)
	pl.sweep(now)
	if pl.m["y"] == nil {
		t.Fatal("a principal still refilling was forgotten (it would get a full burst again)")
	}
	for range 5 {
		if !pl.allowWrite("y") {
			t.Fatal("5 s at 1/s did not refill 5 writes")
		}
	}
	if pl.allowWrite("y") {
		t.Fatal("more than the refill allowed")
	}
}
