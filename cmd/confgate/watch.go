package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/confgate/confgate/client"
	"github.com/confgate/confgate/internal/keyspace"
)

// Reconnect backoff of watch: a uniform draw up to a bound doubling from
// min to max (the client library's full jitter).
const (
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 5 * time.Second
)

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

watch runs on the Go client library (client/), with its guarantees. If the
stream breaks, watch reconnects from the last cursor it saw, to the next
address of --addr, with a backoff of up to 100ms doubling to 5s, and says
so on stderr: no change is missed or shown twice. A gateway that sends
anything behind what was shown (a cursor going backwards, or a snapshot
that is incomplete or older without being a flagged reset) is dropped
before any of it is shown, and watch resumes elsewhere. A snapshot with
"reset": true replaces everything shown before it. --count and --duration
end the watch with status 0; a refused selector or credentials end it
with status 2.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := parseCursorFlag(cmd, "from", from); err != nil {
				return err
			}
			if w.count < 0 {
				return usagef(cmd, "--count must not be negative")
			}
			if duration < 0 {
				return usagef(cmd, "--duration must not be negative")
			}
			// The gateway's rules and wording, before any connection.
			if _, err := keyspace.NewSelector(args); err != nil {
				return fmt.Errorf("selector: %w", err)
			}
			w.prefixes, w.from = args, from
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
	f.StringVar(&w.clientID, "client-id", "", "how the watch names itself to the fleet view (default: generated for this run)")
	f.StringVar(&w.service, "service", "confgate-watch", "the service the watch reports as to the fleet view (confgate fleet)")
	f.StringToStringVar(&w.labels, "label", nil, "a label key=value the watch reports to the fleet view; repeat for several")
	return cmd
}

// outputError: writing the output failed (closed pipe, full disk); no point
// reconnecting.
type outputError struct{ err error }

func (e *outputError) Error() string { return "write output: " + e.err.Error() }
func (e *outputError) Unwrap() error { return e.err }

// watcher is one watch: a client.View whose accepted messages it shows.
type watcher struct {
	g        *globals
	prefixes []string
	from     string // --from, text form; "" starts with a snapshot
	count    int
	progress bool
	// Who the watch is to the fleet view (client.Config's fields).
	clientID, service string
	labels            map[string]string

	// The fields below are used by the view's callbacks (observe,
	// streamEnded), which it calls one at a time from its goroutine; run
	// reads err once the view is closed.
	reader  streamReader
	out     eventPrinter
	seen    int                // entry events shown
	stop    context.CancelFunc // ends the watch
	stopped bool
	err     error // why the watch ended before its context; nil for --count
}

// run watches until ctx ends, --count is reached, the output fails or a
// gateway refuses the watch for good.
func (w *watcher) run(ctx context.Context) error {
	addrs, err := w.g.addrList()
	if err != nil {
		return err
	}
	first, err := w.reachable(ctx, addrs)
	if err != nil || ctx.Err() != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	w.stop = stop
	w.reader = streamReader{progress: w.progress, shown: w.from != ""}
	w.out = newEventPrinter(w.g.env.Stdout, w.g.json())
	v, err := client.Subscribe(ctx, w.config(append(addrs[first:], addrs[:first]...)))
	if err != nil {
		return err
	}
	<-ctx.Done()
	_ = v.Close() // waits for a callback still running
	return w.err
}

// reachable returns the index of the first address of addrs that accepts
// a connection within --timeout, so that a watch of nothing fails at once
// with the reason, like the other verbs, rather than retry forever. Once a
// gateway answered, watch keeps retrying whatever fails.
func (w *watcher) reachable(ctx context.Context, addrs []string) (int, error) {
	cctx, cancel := w.g.callContext(ctx)
	defer cancel()
	cc, i, err := connectAny(cctx, addrs, 0, w.g.creds, nil)
	if err == nil {
		_ = cc.Close()
		return i, nil
	}
	if ctx.Err() != nil {
		return 0, nil // interrupted, or --duration is over: run returns nil
	}
	var ue *unreachableError
	if errors.As(err, &ue) {
		return 0, ue
	}
	return 0, w.g.callError(addrs[i], err)
}

func (w *watcher) config(addrs []string) client.Config {
	dial := []grpc.DialOption{grpc.WithTransportCredentials(w.g.creds)}
	if w.g.perRPC != nil {
		dial = append(dial, grpc.WithPerRPCCredentials(w.g.perRPC)) // the bearer token
	}
	if w.g.timeout > 0 {
		// --timeout bounds each connection attempt.
		dial = append(dial, grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: w.g.timeout}))
	}
	// watch reports stream ends itself (streamEnded); the library's own
	// log is for --log-level debug.
	log := slog.New(slog.DiscardHandler)
	if w.g.log.Enabled(context.Background(), slog.LevelDebug) {
		log = w.g.log
	}
	return client.Config{
		Addrs:         addrs,
		KeepAddrOrder: true, // from the first reachable, as given
		Prefixes:      w.prefixes,
		ResumeCursor:  w.from,
		DialOptions:   dial,
		BackoffMin:    watchBackoffMin,
		BackoffMax:    watchBackoffMax,
		Observe:       w.observe,
		OnStreamEnd:   w.streamEnded,
		Logger:        log,
		ClientID:      w.clientID,
		Service:       w.service,
		Labels:        w.labels,
	}
}

// observe shows a message the view accepted.
func (w *watcher) observe(o client.Observation) {
	if w.stopped {
		return
	}
	for _, e := range w.reader.events(o) {
		if err := w.out.print(e); err != nil {
			w.finish(&outputError{err})
			return
		}
		if e.counted() {
			w.seen++
			if w.count > 0 && w.seen >= w.count {
				w.finish(nil)
				return
			}
		}
	}
}

// streamEnded says on stderr that the view reconnects, or ends the watch
// when the gateway's refusal will not change by retrying.
func (w *watcher) streamEnded(se client.StreamEnd) {
	if w.stopped {
		return
	}
	st, isStatus := grpcStatus(se.Err)
	switch {
	case se.Stopped && isStatus:
		w.finish(w.g.callError(se.Addr, st.Err()))
		return
	case se.Stopped:
		w.finish(se.Err)
		return
	}
	switch st.Code() {
	case codes.PermissionDenied, codes.Unauthenticated, codes.Unimplemented, codes.FailedPrecondition:
		w.finish(w.g.callError(se.Addr, st.Err()))
		return
	}
	what := se.Err.Error()
	if isStatus {
		what = fmt.Sprintf("gateway %s: %s", se.Addr, st.Message())
	}
	from := "a new snapshot"
	if se.ResumeCursor != "" {
		from = "cursor " + se.ResumeCursor
	}
	fmt.Fprintf(w.g.env.Stderr, "confgate: watch: %s; reconnecting in %s to %s from %s\n",
		oneLine(what), se.Backoff.Round(time.Millisecond), se.NextAddr, from)
}

// grpcStatus returns the gRPC status err wraps, if any (a protocol
// violation or a closed stream has none; its code is then OK).
func grpcStatus(err error) (*status.Status, bool) {
	var se interface{ GRPCStatus() *status.Status }
	if errors.As(err, &se) {
		return se.GRPCStatus(), true
	}
	return status.New(codes.OK, ""), false
}

// finish ends the watch with err (nil: --count was reached).
func (w *watcher) finish(err error) {
	if !w.stopped {
		w.stopped, w.err = true, err
		w.stop()
	}
}
