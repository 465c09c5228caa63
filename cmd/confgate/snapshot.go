package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/spf13/cobra"
)

// snapshotEndOut is the last JSON line of snapshot.
type snapshotEndOut struct {
	Cursor     string `json:"cursor"`
	EntryCount uint64 `json:"entry_count"`
	Digest     string `json:"digest"`
}

func newSnapshotCmd(g *globals) *cobra.Command {
	var minCursor string
	cmd := &cobra.Command{
		Use:   "snapshot [PREFIX...]",
		Short: "Print every entry under the prefixes (all entries by default), at one cursor",
		Long: `Print a consistent snapshot of the entries whose keys start with one of the
prefixes (every entry when none is given), in key order, all at one cursor.

Text output: "key = value" lines (values that are not UTF-8 show as
"(base64) ...", keys and values with newlines or other control, invisible or
formatting characters are Go-quoted), then
"# N entries at cursor C digest D". JSON output: one object per entry
{key, value, value_encoding?, content_type, headers?, version}, then
{cursor, entry_count, digest}.

The snapshot is checked before anything is printed: its entry count and
digest must match the entries received, so output is never partial.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &confgatev1.GetSnapshotRequest{Selector: &confgatev1.Selector{Prefixes: args}}
			var err error
			if req.MinCursor, err = parseCursorFlag(cmd, "min-cursor", minCursor); err != nil {
				return err
			}
			ctx, cancel := g.callContext(cmd.Context())
			defer cancel()
			entries, end, err := g.getSnapshot(ctx, req)
			if err != nil {
				return err
			}
			p := newPrinter(g.env.Stdout)
			for _, e := range entries {
				if g.json() {
					out := entryJSON("", e, nil)
					err = p.JSON(out)
				} else {
					err = p.Linef("%s = %s", displayKey(e.GetKey()), displayValue(e.GetValue()))
				}
				if err != nil {
					return err
				}
			}
			if g.json() {
				return p.JSON(snapshotEndOut{Cursor: cursorText(end.GetCursor()), EntryCount: end.GetEntryCount(), Digest: digestText(end.GetDigest())})
			}
			return p.Linef("# %d entries at cursor %s digest %s", end.GetEntryCount(), cursorText(end.GetCursor()), digestText(end.GetDigest()))
		},
	}
	cmd.Flags().StringVar(&minCursor, "min-cursor", "", "read-your-writes: the gateway first waits (bounded) until it has applied this cursor, as printed by put or delete")
	return cmd
}

// getSnapshot reads one whole snapshot from the first gateway that answers,
// checked by checkSnapshot.
func (g *globals) getSnapshot(ctx context.Context, req *confgatev1.GetSnapshotRequest) ([]*confgatev1.Entry, *confgatev1.SnapshotEnd, error) {
	var (
		entries []*confgatev1.Entry
		end     *confgatev1.SnapshotEnd
	)
	err := g.callFirst(ctx, true, func(ctx context.Context, c confgatev1.ConfigServiceClient) error {
		entries, end = nil, nil
		stream, err := c.GetSnapshot(ctx, req)
		if err != nil {
			return err
		}
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return err
			}
			switch x := m.GetMessage().(type) {
			case *confgatev1.GetSnapshotResponse_Chunk:
				entries = append(entries, x.Chunk.GetEntries()...)
			case *confgatev1.GetSnapshotResponse_End:
				end = x.End
			}
		}
	})
	if err != nil {
		return nil, nil, err
	}
	if err := checkSnapshot(entries, end); err != nil {
		return nil, nil, err
	}
	return entries, end, nil
}

// checkSnapshot verifies a snapshot arrived whole: an end marker, as many
// entries as it announces, and the same digest.
func checkSnapshot(entries []*confgatev1.Entry, end *confgatev1.SnapshotEnd) error {
	if end == nil {
		return errors.New("snapshot stream ended without its end marker: the gateway stopped mid-snapshot, try again")
	}
	if uint64(len(entries)) != end.GetEntryCount() {
		return fmt.Errorf("snapshot is incomplete: received %d entries, the gateway announced %d", len(entries), end.GetEntryCount())
	}
	if d := end.GetDigest(); len(d) > 0 && !bytes.Equal(snapshotDigest(entries), d) {
		return fmt.Errorf("snapshot of %d entries does not match its digest %s", len(entries), digestText(d))
	}
	return nil
}
