package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
)

// diffResult is a whole diff, its chunks joined.
type diffResult struct {
	changes  []*confgatev1.KeyDiff
	from, to []byte
}

// fetchDiff streams the diff of prefix between two cursors (to nil: the
// gateway's current one) from the first gateway that answers.
func (g *globals) fetchDiff(ctx context.Context, prefix string, from, to []byte) (diffResult, error) {
	req := &confgatev1.DiffRequest{Prefix: prefix, FromCursor: from, ToCursor: to}
	var res diffResult
	err := g.callFirst(ctx, true, func(ctx context.Context, c confgatev1.ConfigServiceClient) error {
		res = diffResult{}
		stream, err := c.Diff(ctx, req)
		if err != nil {
			return err
		}
		for {
			m, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return errors.New("the gateway ended the diff before its last chunk")
			}
			if err != nil {
				return err
			}
			res.changes = append(res.changes, m.GetChanges()...)
			if len(m.GetFromCursor()) > 0 {
				res.from = m.GetFromCursor()
			}
			if len(m.GetToCursor()) > 0 {
				res.to = m.GetToCursor()
			}
			if m.GetLast() {
				return nil
			}
		}
	})
	if errCode(err) == codes.OutOfRange {
		// The gateway's message says how far back it can answer from.
		return res, fmt.Errorf("cannot diff from that cursor: %w", err)
	}
	return res, err
}

// diffPrefixArg checks the PREFIX argument of diff and rollback.
func diffPrefixArg(cmd *cobra.Command, prefix string) error {
	if err := keyspace.ValidatePrefix(prefix); err != nil {
		return usagef(cmd, "PREFIX: %v", err)
	}
	return nil
}

// diffOp names a key's change: added, removed or changed.
func diffOp(d *confgatev1.KeyDiff) string {
	switch {
	case d.GetBefore() == nil:
		return "added"
	case d.GetAfter() == nil:
		return "removed"
	}
	return "changed"
}

// diffLine is a key's change in text.
func diffLine(d *confgatev1.KeyDiff) string {
	key := displayKey(d.GetKey())
	b, a := d.GetBefore(), d.GetAfter()
	switch {
	case b == nil:
		return fmt.Sprintf("+ %s = %s  (%s)", key, displayValue(a.GetValue()), versionPO(a.GetVersion()))
	case a == nil:
		return fmt.Sprintf("- %s  (was %s = %s)", key, versionPO(b.GetVersion()), displayValue(b.GetValue()))
	case bytes.Equal(b.GetValue(), a.GetValue()):
		return fmt.Sprintf("~ %s = %s  (%s → %s, same value)", key, displayValue(a.GetValue()), versionPO(b.GetVersion()), versionPO(a.GetVersion()))
	}
	return fmt.Sprintf("~ %s: %s → %s  (%s → %s)", key, displayValue(b.GetValue()), displayValue(a.GetValue()), versionPO(b.GetVersion()), versionPO(a.GetVersion()))
}

type keyDiffOut struct {
	Op     string   `json:"op"`
	Key    string   `json:"key"`
	Before *sideOut `json:"before"`
	After  *sideOut `json:"after"`
}

type diffEndOut struct {
	FromCursor string `json:"from_cursor"`
	ToCursor   string `json:"to_cursor"`
	Changes    int    `json:"changes"`
}

func newDiffCmd(g *globals) *cobra.Command {
	var from, to string
	cmd := &cobra.Command{
		Use:   "diff PREFIX --from CURSOR [--to CURSOR]",
		Short: "Print what changed under a prefix between two cursors",
		Long: `Print, in key order, every key under PREFIX ("" for all keys) whose state at
--to (default: the gateway's current cursor) differs from its state at
--from. Cursors are those put, delete, apply, snapshot and watch print.

Text output, one line per key (versions are PARTITION:OFFSET; values shown on
one line, escaped as snapshot does):
  + KEY = VALUE  (VERSION)                added
  - KEY  (was VERSION = VALUE)            removed
  ~ KEY: OLD → NEW  (VERSION → VERSION)   changed
then "# N changes under PREFIX from C1 to C2". JSON output: one object per key
{op: added|removed|changed, key, before, after} (before and after are
{value, value_encoding?, content_type, version}, or null when absent), then
{from_cursor, to_cursor, changes}.

A gateway answers from its change history, which reaches back a bounded
time: a --from older than that fails, saying the oldest cursor it can
answer from.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := args[0]
			if err := diffPrefixArg(cmd, prefix); err != nil {
				return err
			}
			if from == "" {
				return usagef(cmd, "--from is required: the cursor to diff from")
			}
			fromC, err := parseCursorFlag(cmd, "from", from)
			if err != nil {
				return err
			}
			toC, err := parseCursorFlag(cmd, "to", to)
			if err != nil {
				return err
			}
			ctx, cancel := g.callContext(cmd.Context())
			defer cancel()
			res, err := g.fetchDiff(ctx, prefix, fromC, toC)
			if err != nil {
				return err
			}
			p := newPrinter(g.env.Stdout)
			for _, d := range res.changes {
				if g.json() {
					err = p.JSON(keyDiffOut{Op: diffOp(d), Key: d.GetKey(), Before: entrySide(d.GetBefore()), After: entrySide(d.GetAfter())})
				} else {
					err = p.Linef("%s", diffLine(d))
				}
				if err != nil {
					return err
				}
			}
			if g.json() {
				return p.JSON(diffEndOut{FromCursor: cursorText(res.from), ToCursor: cursorText(res.to), Changes: len(res.changes)})
			}
			return p.Linef("# %d change%s under %s from %s to %s", len(res.changes), plural(len(res.changes)), keyspace.Quote(prefix), cursorText(res.from), cursorText(res.to))
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the older cursor (required)")
	cmd.Flags().StringVar(&to, "to", "", "the newer cursor (default: the gateway's current one)")
	return cmd
}

// rollbackOps is the change set that puts every changed key back to its
// state before the diff: a key that was absent is deleted, any other is
// written with its old value, content type and headers (but for the
// gateway's confgate-... ones, which it writes itself). Each operation
// requires the key to still be as the diff left it, so a change made since
// fails the whole change set instead of being overwritten.
func rollbackOps(changes []*confgatev1.KeyDiff) []changeOp {
	var ops []changeOp
	for _, d := range changes {
		b, a := d.GetBefore(), d.GetAfter()
		if (b == nil && a == nil) || sameContent(b, a) {
			continue // nothing to restore: written again with the same content
		}
		op := changeOp{Index: len(ops) + 1, Key: d.GetKey()}
		if a == nil {
			op.Cond = store.Cond{Kind: store.CondAbsent}
		} else {
			op.Cond = store.Cond{Kind: store.CondVersion, Partition: a.GetVersion().GetPartition(), Offset: a.GetVersion().GetOffset()}
		}
		if b == nil {
			op.Delete = true
		} else {
			op.Value = b.GetValue()
			if op.Value == nil {
				op.Value = []byte{}
			}
			op.ContentType = b.GetContentType()
			for _, h := range b.GetHeaders() {
				if h.GetKey() == store.ContentTypeHeader || reservedHeader(h.GetKey()) {
					continue
				}
				op.Headers = append(op.Headers, store.Header{Key: h.GetKey(), Value: h.GetValue()})
			}
		}
		ops = append(ops, op)
	}
	return ops
}

// sameContent reports whether two live entries hold the same value,
// content type and headers (the gateway's confgate-... ones aside).
func sameContent(b, a *confgatev1.Entry) bool {
	if b == nil || a == nil || !bytes.Equal(b.GetValue(), a.GetValue()) || b.GetContentType() != a.GetContentType() {
		return false
	}
	own := func(e *confgatev1.Entry) []*confgatev1.Header {
		var hs []*confgatev1.Header
		for _, h := range e.GetHeaders() {
			if !reservedHeader(h.GetKey()) {
				hs = append(hs, h)
			}
		}
		return hs
	}
	hb, ha := own(b), own(a)
	if len(hb) != len(ha) {
		return false
	}
	for i := range hb {
		if hb[i].GetKey() != ha[i].GetKey() || !bytes.Equal(hb[i].GetValue(), ha[i].GetValue()) {
			return false
		}
	}
	return true
}

// rollbackHook, when set (by tests), runs between a rollback's diff and
// its Apply.
var rollbackHook func()

// reservedHeader reports whether a header name is one gateways write
// themselves (confgate-..., in any case): a write may not give it.
func reservedHeader(k string) bool {
	return strings.HasPrefix(strings.ToLower(k), "confgate-")
}

type rollbackOut struct {
	Prefix string `json:"prefix"`
	// ToCursor is the cursor rolled back to, CurrentCursor the state the
	// diff was taken at.
	ToCursor      string      `json:"to_cursor"`
	CurrentCursor string      `json:"current_cursor"`
	DryRun        bool        `json:"dry_run,omitempty"`
	Operations    []planOpOut `json:"operations"`
}

func newRollbackCmd(g *globals) *cobra.Command {
	var (
		to, requestID string
		dryRun, wait  bool
	)
	cmd := &cobra.Command{
		Use:   "rollback PREFIX --to CURSOR",
		Short: "Put every key under a prefix back to its state at a cursor, all or nothing",
		Long: `Put every key under PREFIX ("" for all keys) back to its state at --to: the
gateway's diff from that cursor to now gives each changed key's old state,
and one change set (see apply) restores it, all or nothing. A key that was
absent is deleted; any other gets its old value, content type and headers
back (not the gateway's confgate-... audit headers: the gateway writes new
ones). Versions are new: a rollback is a new write of old values.

Every operation requires its key to be as the diff found it, so a change
made since the diff is never overwritten: the whole rollback then fails,
writing nothing, with "the prefix changed since the diff; run rollback
again" and where each such key is now.

Prints the change set (as apply --dry-run does), then, unless --dry-run,
the result as apply prints it; JSON: {prefix, to_cursor, current_cursor,
dry_run?, operations: [{op, key, before, after, precondition}]} (before is
the key's current state), then apply's object. A key written since --to but holding the same
value, content type and headers again is left alone. Nothing to restore:
says so, exit status 0. The change set holds at most 1000 keys: roll back narrower
prefixes otherwise. --to must be within the gateway's change history (see
diff).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			prefix := args[0]
			if err := diffPrefixArg(cmd, prefix); err != nil {
				return err
			}
			if to == "" {
				return usagef(cmd, "--to is required: the cursor to roll back to")
			}
			toC, err := parseCursorFlag(cmd, "to", to)
			if err != nil {
				return err
			}
			id, err := requestIDFlag(cmd, requestID)
			if err != nil {
				return err
			}
			ctx, cancel := g.callContext(cmd.Context())
			defer cancel()
			res, err := g.fetchDiff(ctx, prefix, toC, nil)
			if err != nil {
				return err
			}
			ops := rollbackOps(res.changes)
			p := newPrinter(g.env.Stdout)
			if len(ops) == 0 {
				if g.json() {
					return p.JSON(rollbackOut{Prefix: prefix, ToCursor: cursorText(res.from), CurrentCursor: cursorText(res.to), DryRun: dryRun, Operations: []planOpOut{}})
				}
				return p.Linef("nothing to roll back: no key under %s changed since that cursor", keyspace.Quote(prefix))
			}
			if len(ops) > store.MaxSetOps {
				return fmt.Errorf("%d keys under %s changed since that cursor, more than one change set holds (%d): roll back narrower prefixes", len(ops), keyspace.Quote(prefix), store.MaxSetOps)
			}
			current := map[string]*confgatev1.Entry{}
			for _, d := range res.changes {
				current[d.GetKey()] = d.GetAfter()
			}
			plan := make([]planOp, len(ops))
			for i, op := range ops {
				plan[i] = planOp{op: op, before: current[op.Key], holds: true}
			}
			if g.json() {
				out := rollbackOut{Prefix: prefix, ToCursor: cursorText(res.from), CurrentCursor: cursorText(res.to), DryRun: dryRun, Operations: []planOpOut{}}
				for _, po := range plan {
					out.Operations = append(out.Operations, planJSON(po))
				}
				if err := p.JSON(out); err != nil {
					return err
				}
			} else {
				for _, po := range plan {
					if err := p.Linef("%s", planLine(po)); err != nil {
						return err
					}
				}
			}
			if dryRun {
				if g.json() {
					return nil
				}
				return p.Linef("# dry run: %d operation%s, nothing written", len(ops), plural(len(ops)))
			}
			if rollbackHook != nil {
				rollbackHook()
			}
			cs := &changeSet{Name: "rollback", RequestID: id, Ops: ops}
			applied, err := g.apply(ctx, cs, id, wait, "the prefix changed since the diff; run rollback again")
			if err != nil {
				return err
			}
			return g.printApplied(cs, applied)
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "the cursor to roll back to (required)")
	f.BoolVar(&dryRun, "dry-run", false, "print the change set that would roll back, write nothing")
	f.StringVar(&requestID, "request-id", "", "the rollback's request ID, to retry it safely (default: 32 random hex digits)")
	f.BoolVar(&wait, "wait", false, "answer only once the gateway has applied the rollback")
	return cmd
}
