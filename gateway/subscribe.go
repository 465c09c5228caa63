package gateway

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// subscription is one Subscribe stream. Its handler goroutine is the only
// writer to the stream.
type subscription struct {
	g      *Gateway
	stream grpc.ServerStream
	sel    keyspace.Selector
	grp    *group
	// guard ends the stream when its principal may no longer read sel or
	// its credential expires; checked before every message (send) and
	// waited on when idle (loop).
	guard *streamGuard

	pos uint64        // last batch seq sent (or skipped as unmatched)
	at  cursor.Cursor // cursor after pos: everything before it was sent
	// atBytes is at's wire form.
	atBytes []byte
	// filter, after a resume from the change window: changes below it
	// were already seen by the client. Cleared once at covers it.
	filter *cursor.Cursor
	// wakeCh is where the group wakes this stream (group.waiter).
	wakeCh chan struct{}
}

// Subscribe streams a snapshot or the changes after a cursor, then deltas
// and progress until the client goes away or the gateway drains.
func (g *Gateway) Subscribe(req *confgatev1.SubscribeRequest, stream grpc.ServerStreamingServer[confgatev1.SubscribeResponse]) error {
	sel, err := g.parseSelector(req.GetSelector())
	if err != nil {
		return err
	}
	guard, err := g.authorizeRead(stream.Context(), methodSubscribe, sel)
	if err != nil {
		return err
	}
	defer guard.stop()
	var resume *cursor.Cursor
	if len(req.GetResumeCursor()) > 0 {
		c, err := parseCursor("resume_cursor", req.GetResumeCursor())
		if err != nil {
			return err
		}
		resume = &c
	}
	if err := checkClientInfo("client", req.GetClient()); err != nil {
		return err
	}
	if !g.src.Ready() {
		return errNotReady
	}
	g.m.subscribeStreams.Inc()
	defer g.m.subscribeStreams.Dec()
	defer g.clientStream(stream.Context(), req.GetClient(), sel)()
	grp := g.groups.acquire(sel)
	defer g.groups.release(grp, g.m)

	s := &subscription{g: g, stream: stream, sel: sel, grp: grp, guard: guard, wakeCh: make(chan struct{}, 1)}
	defer grp.leave(s)
	ctx := stream.Context()
	if resume == nil {
		err = s.snapshot(ctx, confgatev1.SnapshotReason_SNAPSHOT_REASON_INITIAL)
	} else {
		err = s.resume(ctx, *resume)
	}
	if err != nil {
		return err
	}
	return s.loop(ctx)
}

// send writes one frame and counts it under kind, unless the guard ends
// the stream: every message kind goes through here.
func (s *subscription) send(f *frame, kind prometheus.Counter) error {
	if err := s.guard.check(); err != nil {
		return err
	}
	return s.g.sendFrame(s.stream, f, kind)
}

func (g *Gateway) sendFrame(st grpc.ServerStream, f *frame, kind prometheus.Counter) error {
	if err := st.SendMsg(f); err != nil {
		return err
	}
	kind.Inc()
	g.m.sentBytes.Add(float64(len(f.b)))
	return nil
}

// snapshot sends the selector's full state and continues after it.
func (s *subscription) snapshot(ctx context.Context, reason confgatev1.SnapshotReason) error {
	g := s.g
	var snap *store.Snapshot
	for {
		var err error
		if snap, err = g.src.Snapshot(); err == nil {
			break
		}
		// Not ready (rebuilding): wait, the stream stays open.
		wctx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-g.draining:
				cancel()
			case <-wctx.Done():
			}
		}()
		err = g.src.WaitReady(wctx)
		cancel()
		if err != nil {
			return s.doneErr(ctx)
		}
	}
	res, err := g.streamSnapshot(ctx, snap, s.sel, func(f *frame) error { return s.send(f, g.m.sentChunk) })
	if err != nil {
		return err
	}
	at := snap.Cursor.Encode()
	end := endFrame(&confgatev1.SnapshotEnd{
		Cursor:     at,
		Reason:     reason,
		Reset_:     reason != confgatev1.SnapshotReason_SNAPSHOT_REASON_INITIAL,
		EntryCount: res.count,
		Digest:     res.digest,
	})
	// Counted before the end goes out, so a client that has it sees it
	// counted.
	g.m.snapshots.WithLabelValues(reasonLabel(reason)).Inc()
	if err := s.send(end, g.m.sentEnd); err != nil {
		return err
	}
	s.pos, s.at, s.atBytes, s.filter = snap.Seq, snap.Cursor, at, nil
	return nil
}

// reasonLabel is the reason's enum name without its prefix, lower case:
// "initial", "history_expired", ...
func reasonLabel(r confgatev1.SnapshotReason) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "SNAPSHOT_REASON_"))
}

// resume continues from a client's cursor: never backwards, no gaps.
func (s *subscription) resume(ctx context.Context, c cursor.Cursor) error {
	g := s.g
	r, err := g.src.ResumeFrom(c)
	if errors.Is(err, store.ErrBehind) {
		// The client saw a newer state on another gateway: wait (bounded)
		// rather than serve anything older.
		if werr := g.waitApplied(ctx, "resume_cursor", c); werr != nil {
			// Unless the log no longer has what the client saw: then its
			// view is of records that are gone, and only a reset helps.
			if errors.As(werr, new(beyondLogError)) {
				g.log.Warn("resume cursor past the end of the log: resetting the subscriber", "err", werr)
				g.m.resumes.WithLabelValues("reset").Inc()
				return s.snapshot(ctx, confgatev1.SnapshotReason_SNAPSHOT_REASON_STATE_REBUILT)
			}
			return werr
		}
		r, err = g.src.ResumeFrom(c)
	}
	switch {
	case errors.Is(err, store.ErrTopicChanged):
		g.m.resumes.WithLabelValues("reset").Inc()
		return s.snapshot(ctx, confgatev1.SnapshotReason_SNAPSHOT_REASON_TOPIC_CHANGED)
	case errors.Is(err, store.ErrHistoryGone):
		g.m.resumes.WithLabelValues("reset").Inc()
		return s.snapshot(ctx, confgatev1.SnapshotReason_SNAPSHOT_REASON_HISTORY_EXPIRED)
	case errors.Is(err, store.ErrRebuilt):
		g.m.resumes.WithLabelValues("reset").Inc()
		return s.snapshot(ctx, confgatev1.SnapshotReason_SNAPSHOT_REASON_STATE_REBUILT)
	case errors.Is(err, store.ErrNotReady):
		return errNotReady
	case errors.Is(err, store.ErrBehind):
		return status.Errorf(codes.Unavailable, "gateway is behind resume_cursor: retry, or use another gateway")
	case err != nil:
		return status.Errorf(codes.Internal, "resume: %v", err)
	}
	switch r.Kind {
	case store.ResumeHistory:
		g.m.resumes.WithLabelValues("history").Inc()
		s.pos = r.Seq
		s.at = c
		s.atBytes = c.Encode()
		s.filter = &c
		// Confirm the resume at once, so the client knows it is live
		// even when nothing changed.
		return s.progress()
	case store.ResumeDiff:
		// Older than the change window, but every delete since c is still
		// remembered: the entries at or after c are exactly what changed.
		latest := map[string]*store.Entry{}
		r.Snap.ScanAll(s.sel, func(e *store.Entry) bool {
			if e.Offset >= c.Offset(e.Partition) {
				latest[e.Key] = e
			}
			return true
		})
		ok, err := s.sendCoalesced(latest, r.Seq, r.Snap.Cursor, r.Snap.Cursor.Encode())
		if err != nil || ok {
			g.m.resumes.WithLabelValues("diff").Inc()
			return err
		}
		g.m.resumes.WithLabelValues("reset").Inc()
		return s.snapshot(ctx, confgatev1.SnapshotReason_SNAPSHOT_REASON_HISTORY_EXPIRED)
	}
	return status.Errorf(codes.Internal, "resume: unknown kind %d", r.Kind)
}

// doneErr is the status for a stream that ends because its context ended
// or the gateway drains.
func (s *subscription) doneErr(ctx context.Context) error {
	select {
	case <-s.g.draining:
		return errDraining
	default:
	}
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return errDraining
}

// loop sends deltas and progress until the stream ends.
func (s *subscription) loop(ctx context.Context) error {
	g := s.g
	g.disp.start(g)
	tick := time.NewTicker(g.cfg.ProgressInterval)
	defer tick.Stop()
	for {
		// Woken only by batches that concern the group (wake.go); the
		// rest are skipped here without reading them.
		changed := s.grp.waiter(s)
		if s.filter == nil {
			if h := g.disp.quietHead(s.grp, s.pos); h != nil {
				s.pos, s.at, s.atBytes = h.seq, h.end, h.endBytes
			}
		}
		batches, err := g.src.Since(s.pos, g.cfg.MaxPendingBatches+1)
		switch {
		case errors.Is(err, store.ErrRebuilt):
			if err := s.snapshot(ctx, confgatev1.SnapshotReason_SNAPSHOT_REASON_STATE_REBUILT); err != nil {
				return err
			}
			continue
		case errors.Is(err, store.ErrHistoryGone):
			if err := s.snapshot(ctx, confgatev1.SnapshotReason_SNAPSHOT_REASON_SLOW_SUBSCRIBER); err != nil {
				return err
			}
			continue
		case err != nil:
			return status.Errorf(codes.Internal, "read history: %v", err)
		}
		if len(batches) == 0 {
			select {
			case <-ctx.Done():
				return s.doneErr(ctx)
			case <-g.draining:
				return errDraining
			case <-changed:
				g.m.wakeups.Inc()
			case <-s.guard.changed:
				if err := s.guard.recheck(); err != nil {
					return err
				}
			case <-s.guard.expiry:
				return s.guard.expired()
			case <-s.guard.revalidate:
				if err := s.guard.revoked(); err != nil {
					return err
				}
			case <-tick.C:
				if err := s.progress(); err != nil {
					return err
				}
			}
			continue
		}
		if len(batches) > g.cfg.MaxPendingBatches {
			if err := s.catchUp(ctx, batches); err != nil {
				return err
			}
			continue
		}
		if err := s.sendBatches(batches); err != nil {
			return err
		}
		select {
		case <-tick.C:
			if err := s.progress(); err != nil {
				return err
			}
		case <-g.draining:
			return errDraining
		default:
		}
	}
}

// sendBatches sends the deltas of batches, the group's shared frames
// merged into as few messages as fit (mergeDeltas).
func (s *subscription) sendBatches(batches []*store.Batch) error {
	if s.filter != nil || len(batches) == 1 {
		for _, b := range batches {
			if err := s.sendBatch(b); err != nil {
				return err
			}
		}
		return nil
	}
	var frames []*frame
	for _, b := range batches {
		frames = append(frames, s.grp.frames(s.g, b, s.at)...)
		s.pos, s.at, s.atBytes = b.Seq, b.End, b.EndBytes
	}
	return mergeDeltas(frames, min(mergeBytes, s.g.cfg.ChunkBytes), func(f *frame) error { return s.send(f, s.g.m.sentDelta) })
}

func (s *subscription) sendBatch(b *store.Batch) error {
	var frames []*frame
	if s.filter != nil {
		floor := *s.filter
		frames = s.g.deltaFrames(b, s.at, s.sel, &floor)
		s.g.m.encDelta.Add(float64(len(frames)))
		for _, f := range frames {
			if err := s.send(f, s.g.m.sentDelta); err != nil {
				return err
			}
		}
		s.pos = b.Seq
		if b.End.Covers(floor) {
			s.filter = nil
			s.at, s.atBytes = b.End, b.EndBytes
		} else {
			s.at = cursor.Max(b.End, floor)
			s.atBytes = s.at.Encode()
		}
		return nil
	}
	for _, f := range s.grp.frames(s.g, b, s.at) {
		if err := s.send(f, s.g.m.sentDelta); err != nil {
			return err
		}
	}
	s.pos, s.at, s.atBytes = b.Seq, b.End, b.EndBytes
	return nil
}

// catchUp serves a subscriber that fell far behind: everything pending is
// coalesced per key (latest wins) into one delta, or, past the size bound,
// replaced by a snapshot. Intermediate values are skipped; the final state
// is exact.
func (s *subscription) catchUp(ctx context.Context, first []*store.Batch) error {
	g := s.g
	// Past this many bytes of pending changes a coalesced delta cannot fit
	// MaxCoalescedBytes (coalescing shrinks a backlog by at most its
	// rewrites): stop reading the history there, so a catch-up costs work
	// in proportion to the bound, not to how far behind the reader is.
	bound := 2 * g.cfg.MaxCoalescedBytes
	latest := map[string]*store.Entry{}
	var last *store.Batch
	size := 0
	add := func(bs []*store.Batch) bool {
		for _, b := range bs {
			for _, e := range b.Changes {
				if !s.sel.Match(e.Key) || (s.filter != nil && e.Offset < s.filter.Offset(e.Partition)) {
					continue
				}
				if _, ok := latest[e.Key]; !ok {
					size += len(e.Key) + 32
				}
				latest[e.Key] = e
				size += len(e.Value)
				if size > bound {
					return false
				}
			}
			last = b
		}
		return true
	}
	ok := add(first)
	for ok {
		more, err := g.src.Since(last.Seq, g.cfg.MaxPendingBatches+1)
		if err != nil {
			ok = false
			break
		}
		if len(more) == 0 {
			break
		}
		ok = add(more)
	}
	if ok {
		if ok, err := s.sendCoalesced(latest, last.Seq, last.End, last.EndBytes); err != nil || ok {
			return err
		}
	}
	return s.snapshot(ctx, confgatev1.SnapshotReason_SNAPSHOT_REASON_SLOW_SUBSCRIBER)
}

// sendCoalesced sends latest (per key, its latest change) as one coalesced
// delta ending at end and moves the subscription there. When nothing
// selected changed, a progress message confirms the new position instead
// of an empty delta. ok is false when the delta would exceed
// MaxCoalescedBytes: nothing was sent and the caller snapshots instead.
func (s *subscription) sendCoalesced(latest map[string]*store.Entry, seq uint64, end cursor.Cursor, endBytes []byte) (ok bool, err error) {
	g := s.g
	if len(latest) > 0 {
		f, fits := g.coalesced(latest, endBytes, g.cfg.MaxCoalescedBytes)
		if !fits {
			return false, nil
		}
		if err := s.send(f, g.m.sentDelta); err != nil {
			return true, err
		}
		g.m.coalesced.Inc()
	}
	s.pos, s.at, s.atBytes, s.filter = seq, end, endBytes, nil
	if len(latest) == 0 {
		return true, s.progress()
	}
	return true, nil
}

func (s *subscription) progress() error {
	st := s.g.currentStatus()
	return s.send(progressFrame(&confgatev1.Progress{
		Cursor:     s.atBytes,
		LagRecords: st.LagRecords,
		Stale:      st.Stale,
	}), s.g.m.sentProgress)
}

// GetSnapshot streams the consistent state of a selector, then ends.
func (g *Gateway) GetSnapshot(req *confgatev1.GetSnapshotRequest, stream grpc.ServerStreamingServer[confgatev1.GetSnapshotResponse]) error {
	sel, err := g.parseSelector(req.GetSelector())
	if err != nil {
		return err
	}
	ctx := stream.Context()
	guard, err := g.authorizeRead(ctx, methodGetSnapshot, sel)
	if err != nil {
		return err
	}
	defer guard.stop()
	if len(req.GetMinCursor()) > 0 {
		c, err := parseCursor("min_cursor", req.GetMinCursor())
		if err != nil {
			return err
		}
		if err := g.waitApplied(ctx, "min_cursor", c); err != nil {
			return err
		}
	}
	snap, err := g.src.Snapshot()
	if err != nil {
		return errNotReady
	}
	g.m.snapshotStreams.Inc()
	defer g.m.snapshotStreams.Dec()
	send := func(f *frame) error {
		if err := guard.check(); err != nil {
			return err
		}
		return g.sendFrame(stream, f, g.m.sentChunk)
	}
	res, err := g.streamSnapshot(ctx, snap, sel, send)
	if err != nil {
		return err
	}
	g.m.snapshots.WithLabelValues("get_snapshot").Inc()
	return send(endFrame(&confgatev1.SnapshotEnd{
		Cursor:     snap.Cursor.Encode(),
		Reason:     confgatev1.SnapshotReason_SNAPSHOT_REASON_INITIAL,
		EntryCount: res.count,
		Digest:     res.digest,
	}))
}
