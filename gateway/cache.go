package gateway

import (
	"fmt"
	"strconv"

	"github.com/confgate/confgate/store"
	"github.com/dgraph-io/ristretto/v2"
)

// payloadCache holds encoded payloads that are costly to rebuild and safe to
// lose: an entry's Entry/Deletion bytes by (key, version), which stay valid
// while the cursor moves, and finished snapshots by (selector, batch seq).
// ristretto may drop any Set and stores key hashes, not keys, so every hit
// is checked against what it claims to be, and a miss only costs encoding.
type payloadCache struct {
	c *ristretto.Cache[string, any] // nil when the budget is 0
}

type cachedEntry struct {
	key  string
	part int32
	off  int64
	del  bool
	b    []byte
}

type cachedSnapshot struct {
	key    string
	chunks []*frame
	count  uint64
	digest []byte
}

func newPayloadCache(budget int64) (*payloadCache, error) {
	if budget <= 0 {
		return &payloadCache{}, nil
	}
	// About ten counters per expected item; items average a few hundred
	// bytes.
	counters := max(budget/32, 1024)
	c, err := ristretto.NewCache(&ristretto.Config[string, any]{
		NumCounters:        counters,
		MaxCost:            budget,
		BufferItems:        64,
		IgnoreInternalCost: true,
	})
	if err != nil {
		return nil, fmt.Errorf("gateway: payload cache: %w", err)
	}
	return &payloadCache{c: c}, nil
}

func (pc *payloadCache) close() {
	if pc.c != nil {
		pc.c.Close()
	}
}

func entryCacheKey(e *store.Entry) string {
	return "e" + strconv.FormatInt(int64(e.Partition), 10) + ":" + strconv.FormatInt(e.Offset, 10) + ":" + e.Key
}

// entryBytes returns e's encoded Entry (or Deletion) message, from the
// cache when it holds exactly this key and version. An error means the
// entry cannot be encoded: the caller leaves that one entry out.
func (pc *payloadCache) entryBytes(e *store.Entry, m *metrics) ([]byte, error) {
	if pc.c == nil {
		m.encEntry.Inc()
		return encodeAny(e)
	}
	k := entryCacheKey(e)
	if v, ok := pc.c.Get(k); ok {
		if ce, ok := v.(*cachedEntry); ok && ce.key == e.Key && ce.part == e.Partition && ce.off == e.Offset && ce.del == e.Deleted {
			m.hitEntry.Inc()
			return ce.b, nil
		}
	}
	m.encEntry.Inc()
	b, err := encodeAny(e)
	if err != nil {
		return nil, err
	}
	pc.c.Set(k, &cachedEntry{key: e.Key, part: e.Partition, off: e.Offset, del: e.Deleted, b: b}, int64(len(b)+len(k)+64))
	return b, nil
}

func encodeAny(e *store.Entry) ([]byte, error) {
	if e.Deleted {
		return encodeDeletion(e)
	}
	return encodeEntry(e)
}

func snapshotCacheKey(selKey string, seq uint64) string {
	return "s" + strconv.FormatUint(seq, 10) + ":" + selKey
}

func (pc *payloadCache) snapshot(selKey string, seq uint64) (*cachedSnapshot, bool) {
	if pc.c == nil {
		return nil, false
	}
	k := snapshotCacheKey(selKey, seq)
	v, ok := pc.c.Get(k)
	if !ok {
		return nil, false
	}
	cs, ok := v.(*cachedSnapshot)
	if !ok || cs.key != k {
		return nil, false
	}
	return cs, true
}

func (pc *payloadCache) putSnapshot(k string, cs *cachedSnapshot) {
	if pc.c == nil {
		return
	}
	cs.key = k
	cost := int64(len(k) + 64)
	for _, c := range cs.chunks {
		cost += int64(len(c.b) + 32)
	}
	pc.c.Set(k, cs, cost)
	// Make the snapshot visible before the build is forgotten, so a
	// request right after this one hits instead of encoding again.
	pc.c.Wait()
}
