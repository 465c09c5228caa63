package main

import (
	"github.com/confgate/confgate/client"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// What a watch shows, apart from how: the client library accepts or refuses
// each gateway message (cursor never backwards, snapshots whole and
// checked, resets flagged); streamReader turns the accepted ones into
// watchEvents; an eventPrinter (watch_print.go) writes them in one output
// format.

// eventKind says what a watchEvent reports.
type eventKind int

const (
	// evSnapshotEntry: one entry of a snapshot, shown once the whole
	// snapshot arrived and checked out.
	evSnapshotEntry eventKind = iota + 1
	// evSnapshotEnd: the snapshot's entries were all shown.
	evSnapshotEnd
	// evPut and evDelete: one change of a delta.
	evPut
	evDelete
	// evDeltaEnd: every change of a delta was shown.
	evDeltaEnd
	// evProgress: a progress message (with --progress).
	evProgress
)

// watchEvent is one thing a watch shows.
type watchEvent struct {
	kind eventKind
	// cursor is that of the message that carried the event; for snapshot
	// entries, the snapshot end's.
	cursor []byte
	// entry is the entry of evSnapshotEntry and evPut; coalesced is the
	// delta's flag, for evPut.
	entry     *confgatev1.Entry
	coalesced bool
	// deletion is the key and version of evDelete.
	deletion *confgatev1.Deletion
	// end is the SnapshotEnd of evSnapshotEnd; reset is true when the
	// snapshot replaces what was shown before it.
	end   *confgatev1.SnapshotEnd
	reset bool
	// progress is the Progress of evProgress.
	progress *confgatev1.Progress
}

// counted reports whether the event counts towards --count: entry events.
func (e watchEvent) counted() bool {
	return e.kind == evSnapshotEntry || e.kind == evPut || e.kind == evDelete
}

// streamReader turns the messages a client.View accepted (Config.Observe)
// into watch events. The view calls it with one message at a time, in
// order, from one goroutine.
type streamReader struct {
	progress bool // --progress: show progress messages

	// pending are the chunks of the snapshot in progress on stream.
	stream  int
	pending []*confgatev1.Entry
	// shown: a state was shown (a snapshot, or the --from cursor), so a
	// later snapshot replaces it.
	shown bool
}

// events returns what o shows: nothing for a snapshot chunk (its entries
// are shown with the snapshot's end), the entries and end of a snapshot,
// the changes of a delta, or a progress message.
func (r *streamReader) events(o client.Observation) []watchEvent {
	if o.Stream != r.stream {
		// The stream of a half-received snapshot was dropped: the next
		// stream sends its own.
		r.stream, r.pending = o.Stream, nil
	}
	switch x := o.Message.GetMessage().(type) {
	case *confgatev1.SubscribeResponse_SnapshotChunk:
		r.pending = append(r.pending, x.SnapshotChunk.GetEntries()...)
	case *confgatev1.SubscribeResponse_SnapshotEnd:
		return r.snapshot(x.SnapshotEnd)
	case *confgatev1.SubscribeResponse_Delta:
		return deltaEvents(x.Delta)
	case *confgatev1.SubscribeResponse_Progress:
		if r.progress {
			return []watchEvent{{kind: evProgress, cursor: x.Progress.GetCursor(), progress: x.Progress}}
		}
	}
	return nil
}

func (r *streamReader) snapshot(end *confgatev1.SnapshotEnd) []watchEvent {
	evs := make([]watchEvent, 0, len(r.pending)+1)
	for _, e := range r.pending {
		evs = append(evs, watchEvent{kind: evSnapshotEntry, cursor: end.GetCursor(), entry: e})
	}
	// The gateway flags a reset when it knew of a view to replace; the
	// view may also be replaced after it resubscribed without a cursor.
	evs = append(evs, watchEvent{kind: evSnapshotEnd, cursor: end.GetCursor(), end: end, reset: end.GetReset_() || r.shown})
	r.pending, r.shown = nil, true
	return evs
}

func deltaEvents(d *confgatev1.Delta) []watchEvent {
	evs := make([]watchEvent, 0, len(d.GetChanges())+1)
	for _, c := range d.GetChanges() {
		switch ch := c.GetChange().(type) {
		case *confgatev1.Change_Put:
			evs = append(evs, watchEvent{kind: evPut, cursor: d.GetCursor(), entry: ch.Put, coalesced: d.GetCoalesced()})
		case *confgatev1.Change_Delete:
			evs = append(evs, watchEvent{kind: evDelete, cursor: d.GetCursor(), deletion: ch.Delete})
		}
	}
	return append(evs, watchEvent{kind: evDeltaEnd, cursor: d.GetCursor()})
}
