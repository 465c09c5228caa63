package store

// recentIDs remembers the request IDs of applied records, so a retry of a
// write that already landed is answered with its original result. It
// holds what the log held when read plus what was applied since, bounded
// in count and bytes (oldest forgotten first).
type recentIDs struct {
	maxIDs   int
	maxBytes int64
	m        map[string]*idResult
	order    []string // insertion order, for eviction
	head     int
	bytes    int64
}

// idResult is what one request ID wrote.
type idResult struct {
	keys     uint64 // keysHash of the operations, built as records arrive
	versions []Version
}

func newRecentIDs(maxIDs int, maxBytes int64) *recentIDs {
	return &recentIDs{maxIDs: maxIDs, maxBytes: maxBytes, m: map[string]*idResult{}}
}

func idCost(id string, n int) int64 { return int64(len(id)+16*n) + 96 }

// note records that the record at v is operation m.Index of m.
func (r *recentIDs) note(m SetMark, key string, v Version) {
	res := r.m[m.ID]
	if res == nil {
		res = &idResult{versions: make([]Version, m.Count), keys: uint64(m.Count) << 56}
		for i := range res.versions {
			res.versions[i].Partition = -1 // not read (compacted away, or not yet)
		}
		r.m[m.ID] = res
		r.order = append(r.order, m.ID)
		r.bytes += idCost(m.ID, m.Count)
		r.evict()
	}
	if m.Index < len(res.versions) && res.versions[m.Index].Partition < 0 {
		res.versions[m.Index] = v
		res.keys += keyHash(m.Index, key)
	}
}

func (r *recentIDs) get(id string) (*idResult, bool) {
	res, ok := r.m[id]
	return res, ok
}

func (r *recentIDs) evict() {
	for len(r.m) > r.maxIDs || r.bytes > r.maxBytes {
		id := r.order[r.head]
		r.order[r.head] = ""
		r.head++
		if res, ok := r.m[id]; ok {
			r.bytes -= idCost(id, len(res.versions))
			delete(r.m, id)
		}
	}
	if r.head > 1024 && r.head > len(r.order)/2 {
		r.order = append([]string(nil), r.order[r.head:]...)
		r.head = 0
	}
}
