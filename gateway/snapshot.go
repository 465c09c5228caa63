package gateway

import (
	"context"
	"sync"

	"github.com/confgate/confgate/internal/digest"
	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/store"
	"google.golang.org/protobuf/encoding/protowire"
)

// snapBuild is one snapshot being encoded. Every request for the same
// selector at the same batch seq while it is in flight reads the same
// chunks as they are produced, so a reconnect storm encodes once.
type snapBuild struct {
	mu     sync.Mutex
	more   chan struct{} // closed and replaced when chunks grow or done
	chunks []*frame
	done   bool
	count  uint64
	digest []byte
}

// snapshotResult is what a reader needs besides the chunks.
type snapshotResult struct {
	count  uint64
	digest []byte
}

// streamSnapshot sends the chunks of sel at snap through send, sharing the
// encoding with concurrent identical requests and the cache.
func (g *Gateway) streamSnapshot(ctx context.Context, snap *store.Snapshot, sel keyspace.Selector, send func(*frame) error) (snapshotResult, error) {
	if cs, ok := g.cache.snapshot(sel.Key(), snap.Seq); ok {
		g.m.hitSnapshot.Inc()
		for _, c := range cs.chunks {
			if err := send(c); err != nil {
				return snapshotResult{}, err
			}
		}
		return snapshotResult{count: cs.count, digest: cs.digest}, nil
	}

	key := snapshotCacheKey(sel.Key(), snap.Seq)
	g.buildMu.Lock()
	if g.closing {
		g.buildMu.Unlock()
		return snapshotResult{}, errDraining
	}
	b, ok := g.builds[key]
	if !ok {
		b = &snapBuild{more: make(chan struct{})}
		g.builds[key] = b
		g.m.encSnapshot.Inc()
		g.builders.Add(1)
		go func() {
			defer g.builders.Done()
			g.buildSnapshot(b, snap, sel)
		}()
	} else {
		g.m.hitSnapshot.Inc()
	}
	g.buildMu.Unlock()

	for i := 0; ; {
		b.mu.Lock()
		if i < len(b.chunks) {
			c := b.chunks[i]
			b.mu.Unlock()
			if err := send(c); err != nil {
				return snapshotResult{}, err
			}
			i++
			continue
		}
		if b.done {
			res := snapshotResult{count: b.count, digest: b.digest}
			b.mu.Unlock()
			return res, nil
		}
		more := b.more
		b.mu.Unlock()
		select {
		case <-ctx.Done():
			return snapshotResult{}, ctx.Err()
		case <-more:
		}
	}
}

// buildSnapshot encodes the chunks. It runs to completion even if every
// reader leaves: it is CPU-only and its result is cached.
func (g *Gateway) buildSnapshot(b *snapBuild, snap *store.Snapshot, sel keyspace.Selector) {
	var (
		dig   digest.Digest
		count uint64
		body  = make([]byte, 0, g.cfg.ChunkBytes)
	)
	publish := func(final bool) {
		b.mu.Lock()
		if len(body) > 0 {
			b.chunks = append(b.chunks, chunkFrame(body))
			body = make([]byte, 0, g.cfg.ChunkBytes)
		}
		if final {
			b.done, b.count, b.digest = true, count, dig.Bytes()
		}
		close(b.more)
		b.more = make(chan struct{})
		b.mu.Unlock()
	}
	snap.Scan(sel, func(e *store.Entry) bool {
		eb, ok := g.encoded(e)
		if !ok {
			return true
		}
		if len(body) > 0 && len(body)+fieldSize(len(eb)) > g.cfg.ChunkBytes {
			publish(false)
		}
		body = protowire.AppendTag(body, fieldChunkEntries, protowire.BytesType)
		body = protowire.AppendBytes(body, eb)
		dig.Add(e.DigestHash())
		count++
		return true
	})
	publish(true)

	b.mu.Lock()
	chunks, res := b.chunks, &cachedSnapshot{count: b.count, digest: b.digest}
	b.mu.Unlock()
	res.chunks = chunks
	g.cache.putSnapshot(snapshotCacheKey(sel.Key(), snap.Seq), res)

	// Readers still streaming keep their pointer to b; later requests find
	// the cache (when it admitted the snapshot) or build anew.
	g.buildMu.Lock()
	if key := snapshotCacheKey(sel.Key(), snap.Seq); g.builds[key] == b {
		delete(g.builds, key)
	}
	g.buildMu.Unlock()
}
