package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Reconnect backoff of watch: doubles from min to max, with jitter.
const (
	backoffMin = 100 * time.Millisecond
	backoffMax = 5 * time.Second
)

// snapshotEndEvent is the JSON line closing a snapshot in watch output.
type snapshotEndEvent struct {
	Op         string `json:"op"`
	Cursor     string `json:"cursor"`
	Reason     string `json:"reason"`
	Reset      bool   `json:"reset"`
	EntryCount uint64 `json:"entry_count"`
	Digest     string `json:"digest"`
}

// progressEvent is the JSON line of a progress message (with --progress).
type progressEvent struct {
	Op         string `json:"op"`
	Cursor     string `json:"cursor"`
	LagRecords int64  `json:"lag_records"`
	Stale      bool   `json:"stale"`
}

type deleteEvent struct {
	Op      string     `json:"op"`
	Key     string     `json:"key"`
	Version versionOut `json:"version"`
	Cursor  string     `json:"cursor"`
}

func newWatchCmd(g *globals) *cobra.Command {
	w := &watcher{g: g}
	var from string
	var duration time.Duration
	cmd := &cobra.Command{
		Use:   "watch [PREFIX...]",
		Short: "Stream the entries under the prefixes, then every change",
		Long: `Stream a snapshot of the entries under the prefixes (every entry when none is
given), then every change as it is applied. With --from CURSOR (a cursor
printed by put, delete, snapshot or an earlier watch) only the changes after
it are shown, without a snapshot.

Text output: "SNAPSHOT key = value  (p0@3)", "PUT key = value  (p0@12)" and
"DELETE key  (p0@13)" lines, "# cursor C" after each message; keys and values
holding control, invisible or formatting characters are Go-quoted, values
that are not UTF-8 show as "(base64) ...". JSON output: one
object per event: {op: "snapshot"|"put"|"delete", key, value,
value_encoding?, content_type, headers?, version, cursor}, where cursor is
that of the message that carried the event (for snapshot entries, the
snapshot end's); {op: "snapshot_end", cursor, reason, reset, entry_count,
digest}; with --progress, {op: "progress", cursor, lag_records, stale}.

If the stream breaks, watch reconnects from the last cursor it saw, to the
next address of --addr, with a backoff of 100ms to 5s: no change is missed
or shown twice. A snapshot with "reset": true replaces everything before it.
--count and --duration end the watch with status 0.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if w.cursor, err = parseCursorFlag(cmd, "from", from); err != nil {
				return err
			}
			if w.count < 0 {
				return usagef(cmd, "--count must not be negative")
			}
			if duration < 0 {
				return usagef(cmd, "--duration must not be negative")
			}
			w.prefixes = args
			w.p = newPrinter(g.env.Stdout)
			ctx := cmd.Context()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			return w.run(ctx)
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "start after this cursor: only later changes are shown (no snapshot, unless the gateway no longer holds that history)")
	f.IntVar(&w.count, "count", 0, "stop after this many entry events (snapshot entries count); 0 means no limit")
	f.DurationVar(&duration, "duration", 0, "stop after this long; 0 means no limit")
	f.BoolVar(&w.progress, "progress", false, "also show the gateway's periodic progress messages (cursor, lag, staleness)")
	return cmd
}

// outputError: writing the output failed (closed pipe, full disk); no point
// reconnecting.
type outputError struct{ err error }

func (e *outputError) Error() string { return "write output: " + e.err.Error() }
func (e *outputError) Unwrap() error { return e.err }

// errWatchDone: --count was reached.
var errWatchDone = errors.New("watch: count reached")

type watcher struct {
	g        *globals
	p        *printer
	prefixes []string
	count    int
	progress bool

	cursor  []byte              // last cursor fully processed: where to resume
	seen    int                 // entry events shown
	pending []*confgatev1.Entry // chunks of the snapshot in progress
}

// run subscribes, and resubscribes from the last cursor when the stream
// breaks, until ctx ends or --count is reached.
func (w *watcher) run(ctx context.Context) error {
	addrs, err := w.g.addrList()
	if err != nil {
		return err
	}
	backoff := backoffMin
	next := 0
	everConnected := false
	for {
		addr, received, err := w.session(ctx, addrs, next)
		switch {
		case errors.Is(err, errWatchDone), ctx.Err() != nil:
			return nil
		}
		var oe *outputError
		if errors.As(err, &oe) {
			return oe
		}
		var ue *unreachableError
		if errors.As(err, &ue) && !everConnected {
			// Nothing was ever reachable: a typo or nothing running.
			return ue
		}
		if addr != "" {
			everConnected = true
		}
		switch status.Code(err) {
		case codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented, codes.FailedPrecondition:
			return w.g.callError(addr, err)
		}
		if received {
			backoff = backoffMin
		}
		// Equal jitter: between half and all of the backoff.
		sleep := backoff/2 + rand.N(backoff/2+1)
		what := err.Error()
		if st, ok := status.FromError(err); ok {
			what = st.Message()
		}
		from := "a new snapshot"
		if len(w.cursor) > 0 {
			from = "cursor " + cursorText(w.cursor)
		}
		fmt.Fprintf(w.g.env.Stderr, "confgate: watch: %s; reconnecting in %s from %s\n", oneLine(what), sleep.Round(time.Millisecond), from)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(sleep):
		}
		backoff = min(backoff*2, backoffMax)
		if addr != "" {
			// Move on to the next address after the one that failed.
			for i, a := range addrs {
				if a == addr {
					next = i + 1
				}
			}
		}
	}
}

// session runs one subscription on the first reachable address from
// addrs[start]. It returns the address used ("" when none was reachable),
// whether any message arrived, and why it ended.
func (w *watcher) session(ctx context.Context, addrs []string, start int) (string, bool, error) {
	cctx, cancel := ctx, context.CancelFunc(func() {})
	if w.g.timeout > 0 {
		cctx, cancel = context.WithTimeout(ctx, w.g.timeout)
	}
	cc, i, err := connectAny(cctx, addrs, start%len(addrs), w.g.creds)
	cancel()
	if err != nil {
		return "", false, err
	}
	defer cc.Close()
	addr := addrs[i]
	w.g.log.Debug("subscribing", "addr", addr, "cursor", cursorText(w.cursor))

	sctx, stop := context.WithCancel(ctx)
	defer stop()
	stream, err := confgatev1.NewConfigServiceClient(cc).Subscribe(sctx, &confgatev1.SubscribeRequest{
		Selector:     &confgatev1.Selector{Prefixes: w.prefixes},
		ResumeCursor: w.cursor,
	})
	if err != nil {
		return addr, false, err
	}
	w.pending = w.pending[:0]
	received := false
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			err = status.Error(codes.Unavailable, "the gateway ended the stream")
		}
		if err != nil {
			return addr, received, err
		}
		received = true
		if err := w.handle(m); err != nil {
			if errors.Is(err, errWatchDone) || status.Code(err) == codes.DataLoss {
				return addr, received, err
			}
			return addr, received, &outputError{err}
		}
	}
}

// handle shows one message and moves the cursor past it.
func (w *watcher) handle(m *confgatev1.SubscribeResponse) error {
	switch x := m.GetMessage().(type) {
	case *confgatev1.SubscribeResponse_SnapshotChunk:
		w.pending = append(w.pending, x.SnapshotChunk.GetEntries()...)
		return nil
	case *confgatev1.SubscribeResponse_SnapshotEnd:
		end := x.SnapshotEnd
		entries := w.pending
		w.pending = nil
		if err := checkSnapshot(entries, end); err != nil {
			return status.Error(codes.DataLoss, err.Error())
		}
		for _, e := range entries {
			if err := w.entry("snapshot", e, end.GetCursor(), false); err != nil {
				return err
			}
		}
		if w.g.json() {
			if err := w.p.JSON(snapshotEndEvent{
				Op: "snapshot_end", Cursor: cursorText(end.GetCursor()), Reason: reasonText(end.GetReason()),
				Reset: end.GetReset_(), EntryCount: end.GetEntryCount(), Digest: digestText(end.GetDigest()),
			}); err != nil {
				return err
			}
		} else {
			note := ""
			if end.GetReset_() {
				note = ", replaces everything shown before"
			}
			noun := "entries"
			if end.GetEntryCount() == 1 {
				noun = "entry"
			}
			if err := w.p.Linef("# snapshot: %d %s (%s%s)", end.GetEntryCount(), noun, reasonText(end.GetReason()), note); err != nil {
				return err
			}
			if err := w.p.Linef("# cursor %s", cursorText(end.GetCursor())); err != nil {
				return err
			}
		}
		w.cursor = end.GetCursor()
	case *confgatev1.SubscribeResponse_Delta:
		d := x.Delta
		for _, c := range d.GetChanges() {
			var err error
			switch ch := c.GetChange().(type) {
			case *confgatev1.Change_Put:
				err = w.entry("put", ch.Put, d.GetCursor(), d.GetCoalesced())
			case *confgatev1.Change_Delete:
				err = w.deletion(ch.Delete, d.GetCursor())
			}
			if err != nil {
				return err
			}
		}
		if !w.g.json() {
			if err := w.p.Linef("# cursor %s", cursorText(d.GetCursor())); err != nil {
				return err
			}
		}
		w.cursor = d.GetCursor()
	case *confgatev1.SubscribeResponse_Progress:
		pr := x.Progress
		if w.progress {
			var err error
			if w.g.json() {
				err = w.p.JSON(progressEvent{Op: "progress", Cursor: cursorText(pr.GetCursor()), LagRecords: pr.GetLagRecords(), Stale: pr.GetStale()})
			} else {
				stale := ""
				if pr.GetStale() {
					stale = ", stale: the gateway has not heard from Kafka recently"
				}
				if err = w.p.Linef("# progress: lag %d records%s", pr.GetLagRecords(), stale); err == nil {
					err = w.p.Linef("# cursor %s", cursorText(pr.GetCursor()))
				}
			}
			if err != nil {
				return err
			}
		}
		if len(pr.GetCursor()) > 0 {
			w.cursor = pr.GetCursor()
		}
	}
	return nil
}

// entry shows one snapshot entry or put, and counts it.
func (w *watcher) entry(op string, e *confgatev1.Entry, cursor []byte, coalesced bool) error {
	var err error
	if w.g.json() {
		out := entryJSON(op, e, cursor)
		out.Coalesced = coalesced
		err = w.p.JSON(out)
	} else {
		label := "PUT"
		if op == "snapshot" {
			label = "SNAPSHOT"
		}
		err = w.p.Linef("%s %s = %s  (%s)", label, displayKey(e.GetKey()), displayValue(e.GetValue()), versionText(e.GetVersion()))
	}
	if err != nil {
		return err
	}
	return w.counted()
}

func (w *watcher) deletion(d *confgatev1.Deletion, cursor []byte) error {
	var err error
	if w.g.json() {
		err = w.p.JSON(deleteEvent{Op: "delete", Key: d.GetKey(), Version: versionJSON(d.GetVersion()), Cursor: cursorText(cursor)})
	} else {
		err = w.p.Linef("DELETE %s  (%s)", displayKey(d.GetKey()), versionText(d.GetVersion()))
	}
	if err != nil {
		return err
	}
	return w.counted()
}

func (w *watcher) counted() error {
	w.seen++
	if w.count > 0 && w.seen >= w.count {
		return errWatchDone
	}
	return nil
}
