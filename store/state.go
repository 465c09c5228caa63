package store

import (
	"errors"
	"slices"
	"sort"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/digest"
	"github.com/confgate/confgate/internal/schema"
	"github.com/google/btree"
)

// Errors readers of the history get.
var (
	// ErrHistoryGone: the batches after the requested position are no
	// longer held. The reader must re-snapshot.
	ErrHistoryGone = errors.New("store: history no longer held")
	// ErrRebuilt: the state was rebuilt (topic recreated or truncated)
	// since the requested position. The reader must re-snapshot.
	ErrRebuilt = errors.New("store: state rebuilt")
	// ErrTopicChanged: the cursor belongs to another topic.
	ErrTopicChanged = errors.New("store: cursor belongs to another topic")
	// ErrBehind: this store has not applied the cursor yet.
	ErrBehind = errors.New("store: cursor not applied yet")
	// ErrBeyondLog: the cursor names a position past the end of the
	// topic's log, which no reader can reach.
	ErrBeyondLog = errors.New("store: cursor is past the end of the topic's log")
)

// skipReason says why a record was not applied. Skipped records still move
// the cursor: the cursor is a log position, not a count of changes.
type skipReason string

const (
	skipNone      skipReason = ""
	skipControl   skipReason = "control"    // transaction marker
	skipNoKey     skipReason = "no_key"     // nil or empty key
	skipBadKey    skipReason = "bad_key"    // fails keyspace.ValidateKey
	skipMisrouted skipReason = "misrouted"  // not the default partitioner's partition for its key
	skipBackwards skipReason = "backwards"  // offset below the partition's cursor
	skipNoop      skipReason = "stale_copy" // same key, not newer than what is held
	skipBadHeader skipReason = "bad_header" // a header no client could decode (see checkHeaders)
	skipTooLarge  skipReason = "too_large"  // over the entry size limits
)

// rec is a decoded record ready to apply.
type rec struct {
	entry     *Entry // nil when skip != skipNone
	part      int32
	off       int64
	ts        int64 // timestamp, unix ms (-1: none)
	logAppend bool  // ts is the broker's append time (LogAppendTime)
	skip      skipReason
	set       SetMark // from SetHeader; Count 0 when none
	cond      Cond    // from IfHeader
}

// size approximates the memory a held record takes.
func (r *rec) size() int64 {
	if r.entry != nil {
		return r.entry.Size()
	}
	return 64
}

// historyLimits bound the change window (batches, bytes: whichever is hit
// first trims it) and the tombstones remembered for resumes (tombs,
// tombBytes; 0 means unbounded).
type historyLimits struct {
	batches   int
	bytes     int64
	tombs     int
	tombBytes int64
	ids       int   // request IDs remembered
	idBytes   int64 // and their bytes
}

// tombRef remembers when a tombstone was applied so it can be purged.
type tombRef struct {
	key  string
	part int32
	off  int64
	at   int64
}

// state is the authoritative state of one topic incarnation. It is not
// safe for concurrent use; Store serializes access.
type state struct {
	topic     cursor.TopicID
	tree      *btree.BTreeG[*Entry]
	next      []int64 // next offset per partition: the cursor
	dig       digest.Digest
	live      int
	tombs     int
	tombBytes int64 // Size of the tombstones in tree

	// recording is false while bootstrapping: records read before the
	// store was ready are not history. The log may have been compacted
	// there, so replaying it could hide deletes from a resuming reader.
	recording    bool
	limits       historyLimits
	history      []*Batch
	historyBytes int64
	firstSeq     uint64 // Seq of history[0], or nextSeq when empty
	nextSeq      uint64
	epochStart   uint64        // first Seq of this incarnation
	floor        cursor.Cursor // position at the start of the history

	// diffFloor[p]: tombstones of partition p are remembered from this
	// offset on, so a resume from there can be answered from the index.
	diffFloor []int64
	tombQ     []tombRef
	// trustFrom[p]: while bootstrapping, the first offset of partition p
	// after which the log certainly still held every tombstone (-1: none
	// yet); see logTrust.
	trust      logTrust
	trustFrom  []int64
	trustStart []int64 // log start offsets listed after the bootstrap

	snap *Snapshot // cached clone for the current Seq

	ids     *recentIDs // request IDs of applied records
	schemas *schemaState
}

func newState(topic cursor.TopicID, start []int64, seq uint64, limits historyLimits, trust logTrust) *state {
	from := make([]int64, len(start))
	for p := range from {
		from[p] = -1
	}
	return &state{
		topic:      topic,
		tree:       btree.NewG(32, lessEntry),
		next:       slices.Clone(start),
		limits:     limits,
		firstSeq:   seq,
		nextSeq:    seq,
		epochStart: seq,
		trust:      trust,
		trustFrom:  from,
		ids:        newRecentIDs(max(limits.ids, 1), max(limits.idBytes, 1)),
		schemas:    &schemaState{},
	}
}

func (st *state) cursor() cursor.Cursor {
	return cursor.Cursor{Topic: st.topic, Offsets: slices.Clone(st.next)}
}

// startRecording marks the end of bootstrap, at now: from here on batches
// are kept as history and tombstones are trustworthy for resumes, and so
// are those read while bootstrapping from the trusted offsets on (see
// logTrust), when the bootstrap ended in time; never below trustStart, the
// log start offsets listed after the bootstrap.
func (st *state) startRecording(now time.Time) {
	st.recording = true
	st.floor = st.cursor()
	st.diffFloor = slices.Clone(st.next)
	st.firstSeq = st.nextSeq
	trust := st.trust
	st.trust = logTrust{}
	if !trust.on || st.trustStart == nil || now.After(trust.deadline) {
		return
	}
	for p, from := range st.trustFrom {
		if from < 0 || p >= len(st.trustStart) {
			continue
		}
		if from = max(from, st.trustStart[p]); from < st.diffFloor[p] {
			st.diffFloor[p] = from
		}
	}
}

// trustPending reports whether the state has caught up with targets but
// waits for the log start offsets (trustStart) before it may trust what it
// read.
func (st *state) trustPending(targets []int64) bool {
	if !st.trust.on || st.trustStart != nil || st.recording {
		return false
	}
	for p, t := range targets {
		if st.next[p] < t {
			return false
		}
	}
	return true
}

// applyResult counts what apply did.
type applyResult struct {
	applied int
	skipped map[skipReason]int
	// condViolated: applied records whose precondition did not hold.
	condViolated []*Entry
	// schemaBad: applied values that break their schema.
	schemaBad []*SchemaError
}

// apply applies records in order and, when recording, appends one batch.
// It returns the batch (nil when not recording or nothing moved).
func (st *state) apply(recs []rec, now int64) (*Batch, applyResult) {
	res := applyResult{}
	var changes, befores []*Entry
	var size int64
	moved := false
	// closed[i]: no change set of several records is open after recs[i];
	// nil when the batch holds none.
	var closed []bool
	var changeRec []int // index in recs of each change
	for i := range recs {
		if recs[i].set.Count > 1 {
			closed = make([]bool, len(recs))
			open := openSets{}
			for k := range recs {
				closed[k] = open.note(&recs[k])
			}
			break
		}
	}
	for i := range recs {
		r := recs[i]
		if int(r.part) >= len(st.next) || r.part < 0 {
			continue // partition unknown to this incarnation; a rebuild follows
		}
		if r.off < st.next[r.part] {
			res.skip(skipBackwards)
			continue
		}
		st.next[r.part] = r.off + 1
		moved = true
		if !st.recording && st.trustFrom[r.part] < 0 && st.trust.appendedAfter(r.ts, r.logAppend) {
			st.trustFrom[r.part] = r.off
		}
		if r.skip != skipNone {
			res.skip(r.skip)
			continue
		}
		e := r.entry
		e.Partition, e.Offset, e.appliedAt = r.part, r.off, now
		// One traversal: insert, and put the old entry back in the rare
		// case it was not older.
		old, had := st.tree.ReplaceOrInsert(e)
		if had && old.Partition == e.Partition && old.Offset >= e.Offset {
			st.tree.ReplaceOrInsert(old)
			res.skip(skipNoop)
			continue
		}
		if r.set.ID != "" {
			st.ids.note(r.set, e.Key, Version{r.part, r.off})
		}
		if r.cond.Kind != CondNone {
			var cur *Entry
			if had {
				cur = old
			}
			if !r.cond.holds(cur) {
				res.condViolated = append(res.condViolated, e)
			}
		}
		if e.Deleted && !had && st.recording {
			// A delete of a key the index does not hold: never written,
			// or deleted so long ago that its tombstone was forgotten,
			// which raised the diff floor past it. No reader at or past
			// the floor holds the key, so nothing needs remembering, and
			// deletes of made-up keys cost no memory. While bootstrapping
			// the put may have been compacted away under a reader's
			// cursor, so there the tombstone is kept.
			st.tree.Delete(e)
			res.applied++
			continue
		}
		if had {
			if old.Deleted {
				st.tombs--
				st.tombBytes -= old.Size()
			} else {
				st.dig.Remove(old.hash)
				st.live--
			}
		}
		if e.Deleted {
			st.tombs++
			st.tombBytes += e.Size()
			st.tombQ = append(st.tombQ, tombRef{e.Key, e.Partition, e.Offset, now})
			if !had || old.Deleted {
				// Deleting an absent key changes nothing a reader can
				// see, but the tombstone is kept for resumes.
				res.applied++
				continue
			}
		} else {
			e.hash = digest.Hash(e.Key, e.Value, e.Partition, e.Offset)
			st.dig.Add(e.hash)
			st.live++
		}
		if schema.IsReserved(e.Key) {
			st.schemas.applySchemaEntry(e)
		} else if len(st.schemas.flagged) > 0 {
			delete(st.schemas.flagged, e.Key)
		}
		res.applied++
		changes = append(changes, e)
		changeRec = append(changeRec, i)
		size += e.Size()
		if had && !old.Deleted {
			befores = append(befores, old)
			size += old.Size()
		} else {
			befores = append(befores, nil)
		}
	}
	// Values are checked against the schemas once the whole batch is
	// applied: a change set may change a schema and its values together.
	if st.schemas.set.Len() > 0 {
		for _, e := range changes {
			if se := st.schemas.checkApplied(e); se != nil {
				res.schemaBad = append(res.schemaBad, se)
			}
		}
	}
	if !moved {
		return nil, res
	}
	st.snap = nil
	if !st.recording {
		return nil, res
	}
	end := st.cursor()
	b := &Batch{Seq: st.nextSeq, Changes: changes, before: befores, cuts: cutsOf(closed, changeRec, len(recs)), End: end, EndBytes: end.Encode(), size: size + int64(len(end.Offsets)*8+64)}
	st.nextSeq++
	st.history = append(st.history, b)
	st.historyBytes += b.size
	st.trim()
	return b, res
}

// cutsOf says after which changes a delta may be cut: no change set open
// from the change's record up to the next change's (nil: anywhere).
func cutsOf(closed []bool, changeRec []int, n int) []bool {
	if closed == nil {
		return nil
	}
	cuts := make([]bool, len(changeRec))
	for j, i := range changeRec {
		next := n
		if j+1 < len(changeRec) {
			next = changeRec[j+1]
		}
		cuts[j] = true
		for k := i; k < next; k++ {
			cuts[j] = cuts[j] && closed[k]
		}
	}
	return cuts
}

func (r *applyResult) skip(why skipReason) {
	if r.skipped == nil {
		r.skipped = map[skipReason]int{}
	}
	r.skipped[why]++
}

// trim drops the oldest batches beyond the limits. At least the newest
// batch is kept so a reader at the head can always continue.
func (st *state) trim() {
	n := 0
	for len(st.history)-n > 1 && (len(st.history)-n > st.limits.batches || st.historyBytes > st.limits.bytes) {
		st.historyBytes -= st.history[n].size
		st.floor = st.history[n].End
		n++
	}
	if n == 0 {
		return
	}
	clear(st.history[:n])
	st.history = st.history[n:]
	st.firstSeq += uint64(n)
	// Reclaim the backing array once most of it is dead.
	if cap(st.history) > 2*len(st.history)+64 {
		st.history = slices.Clone(st.history)
	}
}

// purgeTombstones forgets tombstones applied before cutoff, and the oldest
// beyond the tombstone limits, and raises the diff floor past them: a
// resume from before a forgotten tombstone gets a snapshot, never a gap.
func (st *state) purgeTombstones(cutoff int64) int {
	n := 0
	for len(st.tombQ) > 0 && (st.tombQ[0].at < cutoff || st.overTombLimits()) {
		t := st.tombQ[0]
		// Cleared so the backing array, which keeps its dead front until
		// an append reallocates it, does not keep the key alive.
		st.tombQ[0] = tombRef{}
		st.tombQ = st.tombQ[1:]
		cur, ok := st.tree.Get(&Entry{Key: t.key})
		if !ok || !cur.Deleted || cur.Partition != t.part || cur.Offset != t.off {
			// Superseded by a later put or delete of the key, which the
			// index still holds: a diff from before it stays exact.
			continue
		}
		st.tree.Delete(cur)
		st.tombs--
		st.tombBytes -= cur.Size()
		st.snap = nil
		n++
		if st.recording && int(t.part) < len(st.diffFloor) && st.diffFloor[t.part] <= t.off {
			st.diffFloor[t.part] = t.off + 1
		}
		if from := st.trustFrom[t.part]; from >= 0 && from <= t.off {
			st.trustFrom[t.part] = t.off + 1
		}
	}
	if cap(st.tombQ) > 2*len(st.tombQ)+1024 {
		st.tombQ = slices.Clone(st.tombQ)
	}
	return n
}

func (st *state) overTombLimits() bool {
	return (st.limits.tombs > 0 && st.tombs > st.limits.tombs) || (st.limits.tombBytes > 0 && st.tombBytes > st.limits.tombBytes)
}

// snapshot returns a consistent clone. Clone mutates the source tree's
// copy-on-write bookkeeping, so the caller must hold the write lock.
func (st *state) snapshot() *Snapshot {
	if st.snap == nil {
		st.snap = &Snapshot{tree: st.tree.Clone(), Cursor: st.cursor(), Seq: st.nextSeq - 1, dig: st.dig}
	}
	return st.snap
}

// since returns up to max batches after seq.
func (st *state) since(seq uint64, limit int) ([]*Batch, error) {
	limit = max(limit, 1)
	if seq+1 < st.epochStart {
		return nil, ErrRebuilt
	}
	if seq+1 < st.firstSeq {
		return nil, ErrHistoryGone
	}
	i := int(seq + 1 - st.firstSeq)
	if i >= len(st.history) {
		return nil, nil
	}
	j := min(i+limit, len(st.history))
	return slices.Clone(st.history[i:j]), nil
}

// ResumeKind says how a resume from a cursor can be answered.
type ResumeKind int

const (
	// ResumeHistory: replay batches after Seq, skipping changes below the
	// cursor until a batch's end covers it.
	ResumeHistory ResumeKind = iota + 1
	// ResumeDiff: the history is gone but every tombstone since the cursor
	// is remembered: scan the index for entries at or after the cursor.
	ResumeDiff
)

// resume finds where a reader at c continues.
func (st *state) resume(c cursor.Cursor) (ResumeKind, uint64, error) {
	if c.Topic != st.topic {
		return 0, 0, ErrTopicChanged
	}
	if len(c.Offsets) < len(st.next) {
		// Made before partitions were added: keys have moved between
		// partitions since, and an entry the reader holds may now be
		// skipped as misrouted, which no replay or diff would tell it.
		return 0, 0, ErrRebuilt
	}
	cur := cursor.Cursor{Topic: st.topic, Offsets: st.next}
	if !cur.Covers(c) {
		return 0, 0, ErrBehind
	}
	if !st.recording {
		return 0, 0, ErrHistoryGone
	}
	if c.Covers(st.floor) {
		i := sort.Search(len(st.history), func(i int) bool { return !c.Covers(st.history[i].End) })
		return ResumeHistory, st.firstSeq + uint64(i) - 1, nil
	}
	if c.Covers(cursor.Cursor{Topic: st.topic, Offsets: st.diffFloor}) {
		return ResumeDiff, st.nextSeq - 1, nil
	}
	return 0, 0, ErrHistoryGone
}
