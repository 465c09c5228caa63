package main

import (
	"io"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// eventPrinter writes watch events in one output format.
type eventPrinter interface {
	print(watchEvent) error
}

func newEventPrinter(w io.Writer, asJSON bool) eventPrinter {
	if asJSON {
		return jsonEvents{newPrinter(w)}
	}
	return textEvents{newPrinter(w)}
}

// textEvents is the text output: "SNAPSHOT key = value  (p0@3)",
// "PUT key = value  (p0@12)", "DELETE key  (p0@13)" and "# ..." lines, keys
// and values made safe for a terminal (displayKey, displayValue).
type textEvents struct{ p *printer }

func (t textEvents) print(e watchEvent) error {
	switch e.kind {
	case evSnapshotEntry:
		return t.entry("SNAPSHOT", e.entry)
	case evPut:
		return t.entry("PUT", e.entry)
	case evDelete:
		return t.p.Linef("DELETE %s  (%s)", displayKey(e.deletion.GetKey()), versionText(e.deletion.GetVersion()))
	case evSnapshotEnd:
		return t.snapshotEnd(e)
	case evDeltaEnd:
		return t.p.Linef("# cursor %s", cursorText(e.cursor))
	case evProgress:
		return t.progress(e)
	}
	return nil
}

func (t textEvents) entry(label string, e *confgatev1.Entry) error {
	return t.p.Linef("%s %s = %s  (%s)", label, displayKey(e.GetKey()), displayValue(e.GetValue()), versionText(e.GetVersion()))
}

func (t textEvents) snapshotEnd(e watchEvent) error {
	note := ""
	if e.reset {
		note = ", replaces everything shown before"
	}
	noun := "entries"
	if e.end.GetEntryCount() == 1 {
		noun = "entry"
	}
	if err := t.p.Linef("# snapshot: %d %s (%s%s)", e.end.GetEntryCount(), noun, reasonText(e.end.GetReason()), note); err != nil {
		return err
	}
	return t.p.Linef("# cursor %s", cursorText(e.cursor))
}

func (t textEvents) progress(e watchEvent) error {
	stale := ""
	if e.progress.GetStale() {
		stale = ", stale: the gateway has not heard from Kafka recently"
	}
	if err := t.p.Linef("# progress: lag %d records%s", e.progress.GetLagRecords(), stale); err != nil {
		return err
	}
	return t.p.Linef("# cursor %s", cursorText(e.cursor))
}

// jsonEvents is the JSON output: one object per event, each with its
// message's cursor (so a delta's end prints nothing), with hidden
// characters escaped (printer.JSON).
type jsonEvents struct{ p *printer }

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

func (j jsonEvents) print(e watchEvent) error {
	switch e.kind {
	case evSnapshotEntry:
		return j.p.JSON(entryJSON("snapshot", e.entry, e.cursor))
	case evPut:
		out := entryJSON("put", e.entry, e.cursor)
		out.Coalesced = e.coalesced
		return j.p.JSON(out)
	case evDelete:
		return j.p.JSON(deleteEvent{Op: "delete", Key: e.deletion.GetKey(), Version: versionJSON(e.deletion.GetVersion()), Cursor: cursorText(e.cursor)})
	case evSnapshotEnd:
		return j.p.JSON(snapshotEndEvent{
			Op: "snapshot_end", Cursor: cursorText(e.cursor), Reason: reasonText(e.end.GetReason()),
			Reset: e.reset, EntryCount: e.end.GetEntryCount(), Digest: digestText(e.end.GetDigest()),
		})
	case evProgress:
		return j.p.JSON(progressEvent{Op: "progress", Cursor: cursorText(e.cursor), LagRecords: e.progress.GetLagRecords(), Stale: e.progress.GetStale()})
	}
	return nil
}
