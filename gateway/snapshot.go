package gateway

import (
	"context"
	"encoding/binary"
	"iter"

	"github.com/confgate/confgate/internal/digest"
	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/store"
	"github.com/zeebo/xxh3"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
)

// A snapshot is sent one chunk at a time. Each request walks the
// immutable store.Snapshot itself on its own goroutine and holds at most
// the chunk it is sending: nothing is built ahead of a reader, a reader
// that stalls pins one chunk, and a request that ends stops its walk.
//
// Chunk i of (selector, batch seq) is the same for every request: it
// starts after the last key of chunk i-1 and takes entries while they fit
// ChunkBytes, so identical requests share chunk encodings through the
// cache and through builds in flight (Gateway.builds), and entries come
// from the per-entry cache, so a reconnect storm does not encode the same
// entries again. At most Config.MaxSnapshotBuilds chunks are encoded at
// once, gateway-wide.

// snapChunk is one encoded chunk and what the next one needs.
type snapChunk struct {
	key   string // cache key: selector, batch seq, index
	after string // the chunk holds entries after this key ("" for the first)
	f     *frame // nil when no entry in the range could be encoded (last chunk only)
	count uint64 // entries in f
	dig   xxh3.Uint128
	// next is the last key the chunk covers, entries left out included;
	// the next chunk starts after it. last says there is none.
	next string
	last bool
}

func (c *snapChunk) cost() int64 {
	n := int64(len(c.key) + len(c.after) + len(c.next) + 128)
	if c.f != nil {
		n += int64(cap(c.f.b))
	}
	return n
}

// snapBuild is a chunk being encoded by one request; identical requests
// wait for it instead of encoding it again. res stays nil when the
// builder left (its caller went away, or it failed): a waiter then tries
// again, possibly building it itself.
type snapBuild struct {
	done chan struct{}
	res  *snapChunk // set before done is closed
}

// snapshotResult is what the SnapshotEnd needs: the entries sent and
// their digest (entries left out count in neither).
type snapshotResult struct {
	count  uint64
	digest []byte
}

// streamSnapshot sends the chunks of sel at snap through send, one at a
// time, sharing encodings with identical requests through the cache and
// builds in flight.
func (g *Gateway) streamSnapshot(ctx context.Context, snap *store.Snapshot, sel keyspace.Selector, send func(*frame) error) (snapshotResult, error) {
	r := &snapReader{g: g, snap: snap, sel: sel, selKey: sel.Key()}
	defer r.close()
	var (
		total digest.Digest
		count uint64
		after string
	)
	for i := 0; ; i++ {
		c, err := r.chunk(ctx, i, after)
		if err != nil {
			return snapshotResult{}, err
		}
		if c.f != nil {
			if err := send(c.f); err != nil {
				return snapshotResult{}, err
			}
		}
		total.Add(c.dig)
		count += c.count
		if c.last {
			return snapshotResult{count: count, digest: total.Bytes()}, nil
		}
		after = c.next
	}
}

// snapReader is one request's walk over a snapshot. Its scan is created
// on the first chunk the request has to encode itself and only ever moves
// forward, so a request walks the snapshot at most once whatever mix of
// shared and own chunks it sends.
type snapReader struct {
	g      *Gateway
	snap   *store.Snapshot
	sel    keyspace.Selector
	selKey string

	next func() (*store.Entry, bool) // nil until first needed
	stop func()
	// pending was pulled from the scan but did not fit the chunk before:
	// it begins the next one (its encoding is kept with it).
	pending  *store.Entry
	pendingB []byte
	ended    bool   // the scan is exhausted
	at       string // the scan stands right after this key
}

func (r *snapReader) close() {
	if r.stop != nil {
		r.stop()
	}
}

// chunk returns chunk i, which starts after key after: from the cache,
// from an identical request encoding it now, or encoded here.
func (r *snapReader) chunk(ctx context.Context, i int, after string) (*snapChunk, error) {
	g := r.g
	k := chunkCacheKey(r.selKey, r.snap.Seq, i)
	for {
		if c, ok := g.cache.chunk(k, after); ok {
			g.m.hitSnapshot.Inc()
			return c, nil
		}
		g.buildMu.Lock()
		if g.closing {
			g.buildMu.Unlock()
			return nil, errDraining
		}
		if b, ok := g.builds[k]; ok {
			g.buildMu.Unlock()
			select {
			case <-ctx.Done():
				return nil, contextErr(ctx)
			case <-b.done:
			}
			if c := b.res; c != nil && c.after == after {
				g.m.hitSnapshot.Inc()
				return c, nil
			}
			continue
		}
		b := &snapBuild{done: make(chan struct{})}
		g.builds[k] = b
		g.builders.Add(1)
		g.buildMu.Unlock()
		return r.build(ctx, k, after, b)
	}
}

// build encodes chunk k for every request waiting on b. Whatever happens
// (a cancelled caller, a panic on this request's goroutine), b is
// finished and forgotten, so no waiter is left behind.
func (r *snapReader) build(ctx context.Context, k, after string, b *snapBuild) (c *snapChunk, err error) {
	g := r.g
	defer func() {
		b.res = c
		g.buildMu.Lock()
		if g.builds[k] == b {
			delete(g.builds, k)
		}
		g.buildMu.Unlock()
		close(b.done)
		g.builders.Done()
	}()
	release, err := g.buildSlot(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	c, err = r.encode(ctx, k, after)
	if err != nil {
		return nil, err
	}
	g.m.encSnapshot.Inc()
	// Visible in the cache before the build is forgotten, so a request
	// right after this one hits instead of encoding again.
	g.cache.putChunk(c)
	return c, nil
}

// buildSlot waits for one of the MaxSnapshotBuilds slots, or for the
// caller to leave, or for the gateway to drain (the client resumes
// elsewhere rather than wait here).
func (g *Gateway) buildSlot(ctx context.Context) (release func(), err error) {
	slots := g.buildSlots
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return nil, contextErr(ctx)
	case <-g.draining:
		return nil, errDraining
	}
	g.m.buildsActive.Inc()
	return func() {
		g.m.buildsActive.Dec()
		<-slots
	}, nil
}

// encode walks the snapshot from after and encodes the entries that fit
// one chunk. It stops, with the caller's error, as soon as the caller is
// gone.
func (r *snapReader) encode(ctx context.Context, k, after string) (*snapChunk, error) {
	g := r.g
	r.seek(after)
	c := &snapChunk{key: k, after: after, next: after}
	var (
		dig  digest.Digest
		body []byte
		done = ctx.Done()
	)
	for {
		select {
		case <-done:
			return nil, contextErr(ctx)
		default:
		}
		e, eb, ok := r.peek()
		if !ok {
			c.last = true
			break
		}
		if eb == nil {
			// Left out (logged and counted by encoded): covered, not sent.
			r.pending, c.next = nil, e.Key
			continue
		}
		if len(body) > 0 && len(body)+fieldSize(len(eb)) > g.cfg.ChunkBytes {
			break // e begins the next chunk
		}
		if body == nil {
			// Grown by append: a small selector's snapshot should not
			// cost a whole ChunkBytes buffer.
			body = make([]byte, 0, min(g.cfg.ChunkBytes, 64<<10))
		}
		body = protowire.AppendTag(body, fieldChunkEntries, protowire.BytesType)
		body = protowire.AppendBytes(body, eb)
		dig.Add(e.DigestHash())
		c.count++
		r.pending, r.pendingB, c.next = nil, nil, e.Key
	}
	if len(body) > 0 {
		c.f = chunkFrame(body)
	}
	c.dig = digestSum(dig)
	r.at = c.next
	return c, nil
}

// seek positions the scan on the first entry after key after. A scan
// already there (this request built the previous chunk) goes on; any other
// (the first chunk it builds follows chunks from the cache) starts anew
// from after, in O(log n), rather than walking the entries it skips.
func (r *snapReader) seek(after string) {
	if r.next != nil && r.at == after {
		return
	}
	if r.stop != nil {
		r.stop()
	}
	r.pending, r.pendingB, r.ended, r.at = nil, nil, false, after
	r.next, r.stop = iter.Pull(r.entries(after))
}

// peek returns the next entry of the scan and its encoding (nil when it
// cannot be encoded), without consuming it; ok is false at the end.
func (r *snapReader) peek() (e *store.Entry, eb []byte, ok bool) {
	if r.pending == nil {
		if r.ended {
			return nil, nil, false
		}
		e, ok := r.next()
		if !ok {
			r.ended = true
			return nil, nil, false
		}
		r.pending = e
	}
	if r.pendingB == nil {
		b, ok := r.g.encoded(r.pending)
		if !ok {
			return r.pending, nil, true
		}
		r.pendingB = b
	}
	return r.pending, r.pendingB, true
}

// entries is the snapshot's live entries under the selector, in key
// order: Scan's keys ascend across prefixes too, since normalized
// prefixes do not cover one another.
func (r *snapReader) entries(after string) iter.Seq[*store.Entry] {
	return func(yield func(*store.Entry) bool) { r.snap.ScanAfter(r.sel, after, yield) }
}

// digestSum is d as a hash that adds to another digest: a digest is a
// lane-wise sum, so the digests of a snapshot's chunks add up to the
// snapshot's.
func digestSum(d digest.Digest) xxh3.Uint128 {
	b := d.Bytes()
	return xxh3.Uint128{Hi: binary.BigEndian.Uint64(b[:8]), Lo: binary.BigEndian.Uint64(b[8:])}
}

// contextErr is the status for a caller that left.
func contextErr(ctx context.Context) error {
	return status.FromContextError(ctx.Err()).Err()
}
