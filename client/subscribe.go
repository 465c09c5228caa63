package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// Subscribe validates cfg, loads Config.StateFile when set, starts the
// subscription in a background goroutine and returns; use WaitSynced to
// wait for the first snapshot, or WaitLoaded to also accept the state
// file's content. The subscription runs until Close is called or ctx is
// done, and survives gateway failures by reconnecting (see Config).
func Subscribe(ctx context.Context, cfg Config) (*View, error) {
	return subscribe(ctx, cfg, func(s *settings) {
		if s.keepAddrOrder {
			return
		}
		rand.Shuffle(len(s.addrs), func(i, j int) { s.addrs[i], s.addrs[j] = s.addrs[j], s.addrs[i] })
	})
}

// subscribe is Subscribe with the address shuffle optional, so tests can
// fix the failover order.
func subscribe(ctx context.Context, cfg Config, tweak func(*settings)) (*View, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	if tweak != nil {
		tweak(&s)
	}
	ctx, cancel := context.WithCancel(ctx)
	v := &View{
		s:      s,
		cancel: cancel,
		synced: make(chan struct{}),
		done:   make(chan struct{}),
	}
	if s.reportInterval > 0 {
		v.kick = make(chan struct{}, 1)
	}
	r := newReplica()
	if s.resume != nil {
		// Synced without being live: the cursor is resumed from and
		// guards against going backwards, like a state file's.
		r.cur, r.synced = *s.resume, true
	}
	if s.stateFile != "" {
		v.dirty = make(chan struct{}, 1)
		if lr := v.loadStateFile(); lr != nil {
			r, v.loaded = lr, true
		}
	}
	v.state.Store(r.publish())
	go v.run(ctx, r)
	return v, nil
}

// run owns the replica and the connection: one stream at a time, then
// backoff and the next address.
func (v *View) run(ctx context.Context, r *replica) {
	defer close(v.done)
	if v.s.stateFile != "" {
		stop, stopped := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(stopped)
			v.persist(stop)
		}()
		// Runs before close(v.done): Close returns after the last write.
		defer func() {
			close(stop)
			<-stopped
		}()
	}
	if v.loaded && v.s.onChange != nil {
		v.s.onChange(Event{Kind: EventLoaded, Cursor: r.cur.String()})
	}
	log := v.s.log
	attempt := 0 // backoff exponent
	for i := 0; ; i++ {
		addr := v.s.addrs[i%len(v.s.addrs)]
		v.setStatus(func(st *connState) {
			st.addr = addr
			if i > 0 {
				st.reconnects++
			}
		})
		resumed := r.synced && !r.fresh
		start := time.Now()
		delivered, err := v.stream(ctx, addr, r, resumed)
		v.setStatus(func(st *connState) { st.connected, st.gatewayStale = false, false })
		if ctx.Err() != nil {
			v.stop(context.Cause(ctx))
			return
		}
		if delivered && time.Since(start) >= v.s.backoffMax {
			attempt = 0
		}
		err = fmt.Errorf("gateway %s: %w", addr, err)
		var pe *protocolError
		switch {
		case errors.As(err, &pe):
			r.fresh = r.fresh || pe.fresh
			log.Warn("dropping gateway stream", "addr", addr, "err", err, "resubscribe_fresh", pe.fresh)
		case status.Code(err) == codes.InvalidArgument && resumed:
			// Either the cursor or the selector was refused. Retry without
			// the cursor: if the selector was the problem, the next answer
			// is permanent.
			r.fresh = true
			log.Warn("gateway refused the request; resubscribing without a cursor", "addr", addr, "err", err)
		case status.Code(err) == codes.InvalidArgument:
			log.Error("gateway refused the selector; subscription stopped", "addr", addr, "err", err)
			v.setStatus(func(st *connState) { st.lastErr = err })
			v.streamEnded(StreamEnd{Addr: addr, Err: err, Stopped: true})
			v.stop(err)
			return
		case errors.Is(err, io.EOF):
			err = fmt.Errorf("gateway %s closed the stream", addr)
			log.Info("gateway closed the stream; reconnecting", "addr", addr)
		default:
			log.Info("gateway stream failed; reconnecting", "addr", addr, "err", err)
		}
		v.setStatus(func(st *connState) { st.lastErr = err })
		wait := v.backoff(attempt)
		v.retrying(StreamEnd{Addr: addr, Err: err, Backoff: wait, NextAddr: v.s.addrs[(i+1)%len(v.s.addrs)]}, r)

		t := time.NewTimer(wait)
		attempt++
		select {
		case <-ctx.Done():
			t.Stop()
			v.stop(context.Cause(ctx))
			return
		case <-t.C:
		}
	}
}

// stream runs one Subscribe stream until it fails. delivered reports
// whether at least one message was applied.
func (v *View) stream(ctx context.Context, addr string, r *replica, resumed bool) (delivered bool, err error) {
	cc, err := grpc.NewClient(addr, v.s.dialOptions...)
	if err != nil {
		return false, err
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	req := &confgatev1.SubscribeRequest{
		Selector: &confgatev1.Selector{Prefixes: v.s.selector.Prefixes()},
		Client:   v.s.clientInfo(),
	}
	if resumed {
		req.ResumeCursor = r.cur.Encode()
	}
	v.s.log.Debug("subscribing", "addr", addr, "resume", resumed)
	sc, err := confgatev1.NewConfigServiceClient(cc).Subscribe(ctx, req, grpc.MaxCallRecvMsgSize(maxRecvMsgSize))
	if err != nil {
		return false, err
	}
	sess := &session{resumed: resumed}
	v.streams++
	if v.kick != nil {
		// Reports go over this stream's connection, so the gateway that
		// serves the client is the one that hears from it. The reporter
		// stops before cc closes (deferred above).
		reporting := make(chan struct{})
		go func() {
			defer close(reporting)
			v.reporter(ctx, cc, addr)
		}()
		defer func() {
			cancel()
			<-reporting
		}()
	}
	for {
		m, err := sc.Recv()
		if err != nil {
			return delivered, err
		}
		first := !delivered
		if first {
			delivered = true
			v.setStatus(func(st *connState) { st.connected = true })
			v.s.log.Info("connected to gateway", "addr", addr, "resumed", resumed)
		}
		res, err := r.handle(sess, m)
		if err != nil {
			return delivered, err
		}
		if v.s.observe != nil {
			v.s.observe(Observation{Stream: v.streams, Addr: addr, ResumeCursor: req.ResumeCursor, Message: m})
		}
		v.applied(ctx, r, res)
		// Report at once to a new gateway, and after a snapshot or delta
		// (a progress message moves the cursor only: the next tick tells).
		if first || res.changed || res.moved && res.progress == nil {
			v.kickReport()
		}
	}
}

// applied publishes the replica after a handled message, updates the
// status and delivers the events.
func (v *View) applied(ctx context.Context, r *replica, res result) {
	// Status first: a reader that sees the new state (its cursor) then
	// also sees the status that came with it.
	v.setStatus(func(st *connState) {
		if p := res.progress; p != nil {
			st.lag, st.gatewayStale = p.GetLagRecords(), p.GetStale()
		}
		if res.reset {
			st.resets++
		}
		if res.first {
			st.isSynced = true
		}
	})
	if res.changed || res.moved {
		v.state.Store(r.publish())
		if v.dirty != nil {
			select {
			case v.dirty <- struct{}{}:
			default: // a write is already pending; it will see this state
			}
		}
	}
	if res.first {
		close(v.synced)
	}
	if res.reset {
		v.s.log.Info("view replaced by a new snapshot", "cursor", r.cur.String(), "entries", r.tree.Len())
	}
	if v.s.onChange == nil {
		return
	}
	for _, e := range res.events {
		if ctx.Err() != nil {
			return
		}
		v.s.onChange(e)
	}
}

// streamEnded calls Config.OnStreamEnd when set. run calls it only when
// ctx is not done, so a closed view reports nothing.
func (v *View) streamEnded(se StreamEnd) {
	if v.s.onStreamEnd != nil {
		v.s.onStreamEnd(se)
	}
}

// retrying is streamEnded for a view about to reconnect: it adds the
// cursor the next stream resumes from.
func (v *View) retrying(se StreamEnd, r *replica) {
	if v.s.onStreamEnd == nil {
		return
	}
	if r.synced && !r.fresh {
		se.ResumeCursor = r.cur.String()
	}
	v.s.onStreamEnd(se)
}

func (v *View) setStatus(f func(*connState)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	f(&v.st)
}

// stop records why the subscription ended (unless Close already did).
func (v *View) stop(err error) {
	v.setStatus(func(st *connState) {
		if st.stopErr == nil {
			st.stopErr = err
		}
	})
}

// backoff returns the wait before attempt n (0-based): a uniform draw in
// [0, min(BackoffMax, BackoffMin*2^n)] ("full jitter").
func (v *View) backoff(n int) time.Duration {
	bound := v.s.backoffMin
	for range n {
		if bound >= v.s.backoffMax/2 {
			bound = v.s.backoffMax
			break
		}
		bound *= 2
	}
	bound = min(bound, v.s.backoffMax)
	return time.Duration(rand.Int64N(int64(bound) + 1))
}
