package history

import (
	"fmt"
	"slices"
	"sort"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/internal/testkit"
	"github.com/confgate/confgate/store"
	"github.com/twmb/franz-go/pkg/kgo"
)

// logRec is a log record with what the checker derived from it.
type logRec struct {
	testkit.LogRecord
	// skip says why a gateway does not apply the record ("" when it does):
	// the same rules as the store's (no key, invalid key, misrouted).
	skip string
	// change: applying it changes the state a reader sees. A put always
	// does; a tombstone only when its key was live just before it.
	change bool
	// set is the index in logIndex.sets of the change set the record
	// belongs to, -1 for none; op is its operation index in the set.
	set int32
	op  int
	// cond is the precondition its writer checked (CondNone: none).
	cond store.Cond
}

func (r *logRec) String() string {
	if r.Tombstone {
		return fmt.Sprintf("delete %q @%d:%d", r.Key, r.Partition, r.Offset)
	}
	return fmt.Sprintf("put %q=%s @%d:%d", r.Key, clipValue(r.Value), r.Partition, r.Offset)
}

func (r *logRec) asChange() Change {
	return Change{Key: r.Key, Value: r.Value, Partition: r.Partition, Offset: r.Offset, Deleted: r.Tombstone}
}

// logIndex is the log ordered for range queries: per partition, record
// indexes in offset order.
type logIndex struct {
	topic cursor.TopicID
	recs  []logRec
	parts [][]int32
	end   []int64 // per partition: the offset after its last record
	sets  []changeSet
}

// changeSet is the records of the log that carry one change-set mark
// (request ID and count), in operation order.
type changeSet struct {
	id    string
	count int
	recs  []int32
	// ambiguous: an operation index occurs more than once, so the records
	// are of more than one landing of the ID (reused once its record and
	// the gateways' window of recent IDs were gone) or forged: which belong
	// together cannot be told, and the set is not judged.
	ambiguous bool
}

// header returns the value of the record's last header key, as the
// gateways read it (a writer cannot set a reserved header, so a repeated
// one is forged).
func header(r *testkit.LogRecord, key string) ([]byte, bool) {
	for i := len(r.Headers) - 1; i >= 0; i-- {
		if r.Headers[i].Key == key {
			return r.Headers[i].Value, true
		}
	}
	return nil, false
}

// marks reads the change-set and precondition headers of a record a
// gateway applies; a malformed one is absent, as for the gateways.
func (ix *logIndex) marks(ri int32, sets map[store.SetMark]int32) {
	r := &ix.recs[ri]
	r.set = -1
	if r.skip != "" {
		return
	}
	if v, ok := header(&r.LogRecord, store.IfHeader); ok {
		if c, err := store.ParseCond(string(v)); err == nil {
			r.cond = c
		}
	}
	v, ok := header(&r.LogRecord, store.SetHeader)
	if !ok {
		return
	}
	m, ok := store.ParseSetMark(v)
	if !ok {
		return
	}
	r.op = m.Index
	id := store.SetMark{ID: m.ID, Count: m.Count}
	si, seen := sets[id]
	if !seen {
		si = int32(len(ix.sets))
		sets[id] = si
		ix.sets = append(ix.sets, changeSet{id: m.ID, count: m.Count})
	}
	r.set = si
	ix.sets[si].recs = append(ix.sets[si].recs, ri)
}

// buildIndex orders the log and derives skips and state changes. With
// partitions > 0 a record is misrouted when Kafka's default partitioner
// puts its key elsewhere for that partition count, as the store decides.
func buildIndex(log []testkit.LogRecord, topic cursor.TopicID, partitions int) (*logIndex, error) {
	ix := &logIndex{topic: topic, recs: make([]logRec, len(log))}
	part := kgo.StickyKeyPartitioner(nil).ForTopic("")
	for i, r := range log {
		if r.Partition < 0 {
			return nil, fmt.Errorf("history: log record %d has partition %d", i, r.Partition)
		}
		lr := logRec{LogRecord: r}
		switch {
		case r.Key == "":
			lr.skip = "no key"
		case keyspace.ValidateKey(r.Key) != nil:
			lr.skip = "invalid key"
		case partitions > 0 && int32(part.Partition(&kgo.Record{Key: []byte(r.Key)}, partitions)) != r.Partition:
			lr.skip = fmt.Sprintf("misrouted: the default partitioner puts it in partition %d of %d",
				part.Partition(&kgo.Record{Key: []byte(r.Key)}, partitions), partitions)
		}
		ix.recs[i] = lr
		for int(r.Partition) >= len(ix.parts) {
			ix.parts = append(ix.parts, nil)
			ix.end = append(ix.end, 0)
		}
		ix.parts[r.Partition] = append(ix.parts[r.Partition], int32(i))
	}
	for p, idx := range ix.parts {
		sort.SliceStable(idx, func(a, b int) bool { return ix.recs[idx[a]].Offset < ix.recs[idx[b]].Offset })
		live := map[string]bool{}
		for j, ri := range idx {
			r := &ix.recs[ri]
			if j > 0 && ix.recs[idx[j-1]].Offset == r.Offset {
				return nil, fmt.Errorf("history: the log holds offset %d of partition %d twice", r.Offset, p)
			}
			if r.skip != "" {
				continue
			}
			r.change = !r.Tombstone || live[r.Key]
			live[r.Key] = !r.Tombstone
		}
		if n := len(idx); n > 0 {
			ix.end[p] = ix.recs[idx[n-1]].Offset + 1
		}
	}
	sets := map[store.SetMark]int32{}
	for p := range ix.parts {
		for _, ri := range ix.parts[p] {
			ix.marks(ri, sets)
		}
	}
	for i := range ix.sets {
		s := &ix.sets[i]
		slices.SortStableFunc(s.recs, func(a, b int32) int { return ix.recs[a].op - ix.recs[b].op })
		for j := 1; j < len(s.recs); j++ {
			if ix.recs[s.recs[j]].op == ix.recs[s.recs[j-1]].op {
				s.ambiguous = true
			}
		}
	}
	return ix, nil
}

// lower is the position in parts[p] of the first record at or after off.
func (ix *logIndex) lower(p int32, off int64) int {
	if int(p) >= len(ix.parts) {
		return 0
	}
	idx := ix.parts[p]
	return sort.Search(len(idx), func(i int) bool { return ix.recs[idx[i]].Offset >= off })
}

// span returns the records of partition p with from <= offset < to.
func (ix *logIndex) span(p int32, from, to int64) []int32 {
	if int(p) >= len(ix.parts) || to <= from {
		return nil
	}
	return ix.parts[p][ix.lower(p, from):ix.lower(p, to)]
}

// find returns the record at (p, off).
func (ix *logIndex) find(p int32, off int64) (*logRec, int32, bool) {
	if p < 0 || int(p) >= len(ix.parts) {
		return nil, -1, false
	}
	i := ix.lower(p, off)
	if i < len(ix.parts[p]) {
		ri := ix.parts[p][i]
		if ix.recs[ri].Offset == off {
			return &ix.recs[ri], ri, true
		}
	}
	return nil, -1, false
}

// endCursor is the cursor after the last record of every partition.
func (ix *logIndex) endCursor() cursor.Cursor {
	return cursor.Cursor{Topic: ix.topic, Offsets: slices.Clone(ix.end)}
}

// model is the state of the log at a cursor, for one selector, moved
// forward incrementally.
type model struct {
	ix   *logIndex
	sel  selector
	pos  []int   // per partition: records of parts[p] applied
	at   []int64 // per partition: the cursor's offset
	live map[string]int32
}

func newModel(ix *logIndex, sel selector) *model {
	return &model{ix: ix, sel: sel, pos: make([]int, len(ix.parts)), at: make([]int64, len(ix.parts)), live: map[string]int32{}}
}

// seek moves the model to c (of the log's topic): forward when c covers
// where it is, else from the start.
func (m *model) seek(c cursor.Cursor) {
	for p := range m.at {
		if c.Offset(int32(p)) < m.at[p] {
			m.pos = make([]int, len(m.ix.parts))
			m.at = make([]int64, len(m.ix.parts))
			m.live = map[string]int32{}
			break
		}
	}
	for p, idx := range m.ix.parts {
		to := c.Offset(int32(p))
		j := m.pos[p]
		for j < len(idx) && m.ix.recs[idx[j]].Offset < to {
			m.apply(idx[j])
			j++
		}
		m.pos[p], m.at[p] = j, to
	}
}

func (m *model) apply(ri int32) {
	r := &m.ix.recs[ri]
	if r.skip != "" || !m.sel.match(r.Key) {
		return
	}
	if r.Tombstone {
		delete(m.live, r.Key)
	} else {
		m.live[r.Key] = ri
	}
}

// get returns the record index of key's live record, or -1.
func (m *model) get(key string) int32 {
	if ri, ok := m.live[key]; ok {
		return ri
	}
	return -1
}

// state returns the model's live entries.
func (m *model) state() map[string]Change {
	out := make(map[string]Change, len(m.live))
	for k, ri := range m.live {
		out[k] = m.ix.recs[ri].asChange()
	}
	return out
}

// StateAt returns the live entries of log at cursor at (the latest
// applied record per key among records below at in its partition,
// tombstone = absent) that prefixes select. Records a gateway skips are
// left out, routing judged for at's partition count.
func StateAt(log []testkit.LogRecord, at cursor.Cursor, prefixes []string) (map[string]Change, error) {
	ix, err := buildIndex(log, at.Topic, len(at.Offsets))
	if err != nil {
		return nil, err
	}
	m := newModel(ix, newSelector(prefixes))
	m.seek(at)
	return m.state(), nil
}

// LogEnd is the cursor after the last record of every partition of log
// (a partition whose log ends in a transaction marker may have a larger
// applied offset than this).
func LogEnd(log []testkit.LogRecord, topic cursor.TopicID) cursor.Cursor {
	c := cursor.Cursor{Topic: topic}
	for _, r := range log {
		for int(r.Partition) >= len(c.Offsets) {
			c.Offsets = append(c.Offsets, 0)
		}
		c.Offsets[r.Partition] = max(c.Offsets[r.Partition], r.Offset+1)
	}
	return c
}
