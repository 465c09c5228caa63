package store

import "time"

// assembler holds back the records of a change set until every record of
// the set has been read, so the state, the history and every cursor move
// past a set whole or not at all. A change set is written in one Kafka
// transaction, so once committed all its records are readable, but a
// fetch may return one partition's part before another's.
//
// Records of a partition stay in log order: while a set's record waits,
// everything after it in its partition waits too (the cursor is a
// per-partition offset). Sets cannot wait on each other in a cycle: the
// gateways write sets through one transactional producer at a time, so in
// every partition an earlier set's records precede a later set's.
//
// A set that never completes (a foreign producer forged the header, or
// wrote part of a set outside a transaction) would stall its partitions:
// after holdFor, or when held records exceed holdBytes, the oldest
// incomplete set is given up and its records flow as plain records.
type assembler struct {
	holdFor   time.Duration
	holdBytes int64

	queues [][]rec // per partition, only while something is held
	held   int     // records in queues
	bytes  int64
	sets   map[string]*pendingSet
	broken int // sets given up, for the metric
}

type pendingSet struct {
	count, got int
	first      time.Time
	broken     bool
}

func newAssembler(partitions int32, holdFor time.Duration, holdBytes int64) *assembler {
	return &assembler{holdFor: holdFor, holdBytes: holdBytes, queues: make([][]rec, partitions), sets: map[string]*pendingSet{}}
}

// add takes the next record of its partition and appends to out what may
// be applied at once: nothing held in its partition and not part of an
// incomplete set.
func (a *assembler) add(r rec, now time.Time, out []rec) []rec {
	p := int(r.part)
	if p < 0 || p >= len(a.queues) {
		return append(out, r) // unknown partition: apply drops it
	}
	if len(a.queues[p]) == 0 && (r.set.Count <= 1 || r.set.ID == "") {
		return append(out, r)
	}
	if r.set.Count > 1 {
		ps := a.sets[r.set.ID]
		if ps == nil {
			ps = &pendingSet{count: r.set.Count, first: now}
			a.sets[r.set.ID] = ps
		}
		ps.got++
	}
	a.queues[p] = append(a.queues[p], r)
	a.held++
	a.bytes += r.size()
	return out
}

// waiting reports whether a record must wait for its set.
func (a *assembler) waiting(r *rec, blocked map[string]bool) bool {
	if r.set.Count <= 1 {
		return false
	}
	return blocked[r.set.ID]
}

// release appends to out every held record that may now be applied, in
// partition order, and gives up sets held too long or too large.
func (a *assembler) release(now time.Time, out []rec) []rec {
	if a.held == 0 {
		return out
	}
	a.expire(now)
	// A set is blocked when incomplete, or when one of its records sits
	// behind a blocked record in its partition; iterate to the fixpoint.
	blocked := map[string]bool{}
	for id, ps := range a.sets {
		if !ps.broken && ps.got < ps.count {
			blocked[id] = true
		}
	}
	for changed := true; changed; {
		changed = false
		for _, q := range a.queues {
			behind := false
			for i := range q {
				r := &q[i]
				if r.set.Count <= 1 || a.sets[r.set.ID] == nil || a.sets[r.set.ID].broken {
					continue
				}
				if behind && !blocked[r.set.ID] {
					blocked[r.set.ID] = true
					changed = true
				}
				behind = behind || blocked[r.set.ID]
			}
		}
	}
	for p, q := range a.queues {
		n := 0
		for n < len(q) && !a.waiting(&q[n], blocked) {
			r := q[n]
			if ps := a.sets[r.set.ID]; r.set.Count > 1 && ps != nil {
				if ps.broken {
					r.set = SetMark{} // given up: plain from here on
				}
				if ps.got--; ps.got <= 0 {
					delete(a.sets, q[n].set.ID)
				}
			}
			a.bytes -= r.size()
			out = append(out, r)
			n++
		}
		if n > 0 {
			a.held -= n
			clear(q[:n])
			a.queues[p] = q[n:]
			if len(a.queues[p]) == 0 {
				a.queues[p] = nil
			}
		}
	}
	return out
}

// expire gives up the oldest incomplete sets while they are older than
// holdFor or the held bytes exceed holdBytes.
// Over the byte bound, one set is given up per call: releasing it may be
// enough.
func (a *assembler) expire(now time.Time) {
	for {
		var oldest *pendingSet
		for _, ps := range a.sets {
			if !ps.broken && ps.got < ps.count && (oldest == nil || ps.first.Before(oldest.first)) {
				oldest = ps
			}
		}
		if oldest == nil {
			return
		}
		late := now.Sub(oldest.first) >= a.holdFor
		if !late && a.bytes <= a.holdBytes {
			return
		}
		oldest.broken = true
		a.broken++
		if !late {
			return
		}
	}
}

// openSets tracks, over a run of released records, the change sets not
// yet complete in it, so a run is cut into batches only between sets.
type openSets map[string]int

// note counts r and reports whether no set is open after it.
func (o openSets) note(r *rec) bool {
	if r.set.Count > 1 {
		o[r.set.ID]++
		if o[r.set.ID] >= r.set.Count {
			delete(o, r.set.ID)
		}
	}
	return len(o) == 0
}
