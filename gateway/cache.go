package gateway

import (
	"fmt"
	"strconv"
	"sync"

	"github.com/confgate/confgate/store"
	"github.com/dgraph-io/ristretto/v2"
)

// payloadCache holds encoded payloads that are costly to rebuild and safe to
// lose: an entry's Entry/Deletion bytes by (key, version), which stay valid
// while the cursor moves, and snapshot chunks by (selector, batch seq,
// chunk index).
// ristretto may drop any Set and stores key hashes, not keys, so every hit
// is checked against what it claims to be, and a miss only costs encoding.
//
// Closing takes mu for writing and clears c, so a handler still running
// after a forced stop finds no cache rather than a closed one (ristretto
// panics on a Set after Close).
type payloadCache struct {
	mu sync.RWMutex
	c  *ristretto.Cache[string, any] // nil when the budget is 0 or closed
}

type cachedEntry struct {
	key  string
	part int32
	off  int64
	del  bool
	b    []byte
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
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.c != nil {
		pc.c.Close()
		pc.c = nil
	}
}

// cache returns the ristretto cache, or nil, with the read lock held:
// the caller must call pc.mu.RUnlock.
func (pc *payloadCache) cache() *ristretto.Cache[string, any] {
	pc.mu.RLock()
	return pc.c
}

func entryCacheKey(e *store.Entry) string {
	return "e" + strconv.FormatInt(int64(e.Partition), 10) + ":" + strconv.FormatInt(e.Offset, 10) + ":" + e.Key
}

// entryBytes returns e's encoded Entry (or Deletion) message, from the
// cache when it holds exactly this key and version. An error means the
// entry cannot be encoded: the caller leaves that one entry out.
func (pc *payloadCache) entryBytes(e *store.Entry, m *metrics) ([]byte, error) {
	c := pc.cache()
	defer pc.mu.RUnlock()
	if c == nil {
		m.encEntry.Inc()
		return encodeAny(e)
	}
	k := entryCacheKey(e)
	if v, ok := c.Get(k); ok {
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
	c.Set(k, &cachedEntry{key: e.Key, part: e.Partition, off: e.Offset, del: e.Deleted, b: b}, int64(len(b)+len(k)+64))
	return b, nil
}

func encodeAny(e *store.Entry) ([]byte, error) {
	if e.Deleted {
		return encodeDeletion(e)
	}
	return encodeEntry(e)
}

func chunkCacheKey(selKey string, seq uint64, i int) string {
	return "c" + strconv.FormatUint(seq, 10) + ":" + strconv.Itoa(i) + ":" + selKey
}

// chunk returns the cached snapshot chunk k when it holds exactly that
// chunk (the hash matched, so the key and start are checked).
func (pc *payloadCache) chunk(k, after string) (*snapChunk, bool) {
	cc := pc.cache()
	defer pc.mu.RUnlock()
	if cc == nil {
		return nil, false
	}
	v, ok := cc.Get(k)
	if !ok {
		return nil, false
	}
	c, ok := v.(*snapChunk)
	if !ok || c.key != k || c.after != after {
		return nil, false
	}
	return c, true
}

// putChunk offers a finished chunk to the cache and waits until a Get can
// see it (when ristretto admitted it).
func (pc *payloadCache) putChunk(c *snapChunk) {
	cc := pc.cache()
	defer pc.mu.RUnlock()
	if cc == nil {
		return
	}
	if cc.Set(c.key, c, c.cost()) {
		cc.Wait()
	}
}
