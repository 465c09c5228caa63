package main

import (
	"bytes"
	"context"
	"fmt"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
)

// The verbs of this file and diff.go call a gateway, and so send a token.
func newApplyCmd(g *globals) *cobra.Command {
	var (
		dryRun, wait bool
		requestID    string
	)
	cmd := &cobra.Command{
		Use:   "apply FILE",
		Short: "Write a change set (puts and deletes of several keys) all or nothing",
		Long: `Write the puts and deletes of a change-set file (FILE - reads standard input)
with one Apply call: all of them or none. Every gateway applies a change set
whole: no subscriber sees part of it, no snapshot holds part of it.

The file is YAML (.yaml, .yml) or JSON (.json; other names and - are JSON
when they parse as JSON, else YAML):

  request_id: deploy-2026-11-30-1      # optional, see --request-id
  operations:
    - put: payments/db/timeout
      value: "30s"                     # a string; or value_base64: for binary
      content_type: text/plain         # optional
      headers: {team: payments}        # optional; confgate-... are reserved
      if_version: "0:42"               # optional precondition; or if_absent: true
    - put: payments/limits
      value_json: {daily: 5000}        # any YAML/JSON, stored as compact JSON
                                       # (content_type application/json by default)
    - delete: payments/old
      if_version: "1:7"

A put has exactly one of value, value_base64 and value_json; a delete none
of them, nor content_type or headers. Unknown fields, a key given twice and
more than 1000 operations are errors, found before anything is sent.

A precondition that fails (the key moved since you read it) fails the whole
change set, naming where each such key is now. The change set's request ID
(--request-id, else the file's request_id, else a random one) makes it
retry-safe: when it has already landed the gateway writes nothing and
answers with the original versions, printed with "duplicate".

Prints each operation's version (PARTITION:OFFSET) and a cursor that
includes the whole change set; JSON: one object {operations: [{op, key,
version}], cursor, request_id, duplicate?}.

--dry-run writes nothing: it reads the current state of every key, prints
what each operation would change (before -> after, and whether its
precondition holds now), then asks the gateway to check the change set as
Apply would (rules, schemas, preconditions) and prints its verdict: "would
apply N operations", or the error (exit status 2).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := readChangeSet(args[0], g.env.Stdin)
			if err != nil {
				return err
			}
			id := cs.RequestID
			if cmd.Flags().Changed("request-id") || id == "" {
				if id, err = requestIDFlag(cmd, requestID); err != nil {
					return err
				}
			}
			ctx, cancel := g.callContext(cmd.Context())
			defer cancel()
			if dryRun {
				return g.dryRun(ctx, cs, id)
			}
			res, err := g.apply(ctx, cs, id, wait, "")
			if err != nil {
				return err
			}
			return g.printApplied(cs, res)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&dryRun, "dry-run", false, "write nothing: print what would change and whether the gateway would accept the change set")
	f.StringVar(&requestID, "request-id", "", "the change set's request ID, to retry it safely (default: the file's request_id, else 32 random hex digits)")
	f.BoolVar(&wait, "wait", false, "answer only once the gateway has applied the change set, so a read from it right after sees it")
	return cmd
}

// applied is the answer to an Apply.
type applied struct {
	requestID string
	resp      *confgatev1.ApplyResponse
}

// apply sends the change set. A failed precondition is an error saying
// where each key is, then hint.
func (g *globals) apply(ctx context.Context, cs *changeSet, id string, wait bool, hint string) (applied, error) {
	req := &confgatev1.ApplyRequest{Operations: cs.protoOps(), RequestId: id, WaitApplied: wait}
	var (
		resp   *confgatev1.ApplyResponse
		failed failedKeys
	)
	for _, op := range req.Operations {
		failed.expectAbsent(op.GetKey(), op.GetPrecondition())
	}
	// The request ID makes the change set retry-safe on the next gateway.
	err := g.callFirst(ctx, true, func(ctx context.Context, c confgatev1.ConfigServiceClient) error {
		var err error
		resp, err = c.Apply(ctx, req)
		failed.note(err)
		return err
	})
	if err != nil {
		return applied{}, g.writeError(err, failed, hint)
	}
	if n := len(resp.GetVersions()); n != len(cs.Ops) {
		return applied{}, fmt.Errorf("the gateway answered %d versions for %d operations", n, len(cs.Ops))
	}
	return applied{id, resp}, nil
}

type appliedOpOut struct {
	Op      string     `json:"op"`
	Key     string     `json:"key"`
	Version versionOut `json:"version"`
}

type appliedOut struct {
	Operations []appliedOpOut `json:"operations"`
	Cursor     string         `json:"cursor"`
	RequestID  string         `json:"request_id"`
	Duplicate  bool           `json:"duplicate,omitempty"`
}

// printApplied prints the answer to an Apply.
func (g *globals) printApplied(cs *changeSet, res applied) error {
	p := newPrinter(g.env.Stdout)
	dup := res.resp.GetDuplicate()
	if dup {
		fmt.Fprintf(g.env.Stderr, "confgate: request ID %s had already landed: nothing was written; the versions are the original ones\n", res.requestID)
	}
	vs := res.resp.GetVersions()
	if g.json() {
		out := appliedOut{Operations: []appliedOpOut{}, Cursor: cursorText(res.resp.GetCursor()), RequestID: res.requestID, Duplicate: dup}
		for i, op := range cs.Ops {
			out.Operations = append(out.Operations, appliedOpOut{Op: op.verb(), Key: op.Key, Version: versionJSON(vs[i])})
		}
		return p.JSON(out)
	}
	for i, op := range cs.Ops {
		if err := p.Linef("%-6s %s  %s", op.verb(), displayKey(op.Key), versionPO(vs[i])); err != nil {
			return err
		}
	}
	suffix := ""
	if dup {
		suffix = " duplicate"
	}
	return p.Linef("applied %d operation%s: cursor=%s request_id=%s%s", len(cs.Ops), plural(len(cs.Ops)), cursorText(res.resp.GetCursor()), res.requestID, suffix)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// readKeys reads the current entry of each key from one gateway (nil:
// absent).
func (g *globals) readKeys(ctx context.Context, keys []string) (map[string]*confgatev1.Entry, error) {
	var cur map[string]*confgatev1.Entry
	err := g.callFirst(ctx, true, func(ctx context.Context, c confgatev1.ConfigServiceClient) error {
		cur = make(map[string]*confgatev1.Entry, len(keys))
		var min []byte
		for _, k := range keys {
			// Each read waits for the cursor of the one before, so no key
			// is read at an older state than the keys before it.
			resp, err := c.Get(ctx, &confgatev1.GetRequest{Key: k, MinCursor: min})
			if errCode(err) == codes.NotFound {
				cur[k] = nil
				continue
			}
			if err != nil {
				return err
			}
			cur[k] = resp.GetEntry()
			min = resp.GetCursor()
		}
		return nil
	})
	return cur, err
}

// planOp is one operation of a dry run: what it would change.
type planOp struct {
	op     changeOp
	before *confgatev1.Entry // nil: absent
	holds  bool              // the precondition holds now (true without one)
}

// condHolds reports whether c holds for the entry (nil: absent).
func condHolds(c store.Cond, e *confgatev1.Entry) bool {
	switch c.Kind {
	case store.CondAbsent:
		return e == nil
	case store.CondVersion:
		return e != nil && e.GetVersion().GetPartition() == c.Partition && e.GetVersion().GetOffset() == c.Offset
	}
	return true
}

// planLine describes one operation of a dry run or a rollback in text.
func planLine(po planOp) string {
	op, b := po.op, po.before
	key := displayKey(op.Key)
	var s string
	switch {
	case op.Delete && b == nil:
		s = fmt.Sprintf("- %s  (absent already)", key)
	case op.Delete:
		s = fmt.Sprintf("- %s  (was %s = %s)", key, versionPO(b.GetVersion()), displayValue(b.GetValue()))
	case b == nil:
		s = fmt.Sprintf("+ %s = %s", key, displayValue(op.Value))
	case bytes.Equal(b.GetValue(), op.Value):
		s = fmt.Sprintf("~ %s = %s  (was %s, same value)", key, displayValue(op.Value), versionPO(b.GetVersion()))
	default:
		s = fmt.Sprintf("~ %s: %s → %s  (was %s)", key, displayValue(b.GetValue()), displayValue(op.Value), versionPO(b.GetVersion()))
	}
	if c := condText(op.Cond); c != "" {
		if po.holds {
			s += fmt.Sprintf("  [%s: holds]", c)
		} else if b == nil {
			s += fmt.Sprintf("  [%s: fails: the key is absent]", c)
		} else {
			s += fmt.Sprintf("  [%s: fails: the key is at %s]", c, versionPO(b.GetVersion()))
		}
	}
	return s
}

// sideOut is one side of a change in JSON: nil is absent.
type sideOut struct {
	Value         string      `json:"value"`
	ValueEncoding string      `json:"value_encoding,omitempty"`
	ContentType   string      `json:"content_type"`
	Version       *versionOut `json:"version,omitempty"`
}

func entrySide(e *confgatev1.Entry) *sideOut {
	if e == nil {
		return nil
	}
	v, enc := encodeValue(e.GetValue())
	ver := versionJSON(e.GetVersion())
	return &sideOut{Value: v, ValueEncoding: enc, ContentType: e.GetContentType(), Version: &ver}
}

func opSide(op changeOp) *sideOut {
	if op.Delete {
		return nil
	}
	v, enc := encodeValue(op.Value)
	return &sideOut{Value: v, ValueEncoding: enc, ContentType: op.ContentType}
}

type planOpOut struct {
	Op                string   `json:"op"`
	Key               string   `json:"key"`
	Before            *sideOut `json:"before"`
	After             *sideOut `json:"after"`
	Precondition      string   `json:"precondition,omitempty"`
	PreconditionHolds *bool    `json:"precondition_holds,omitempty"`
}

func planJSON(po planOp) planOpOut {
	out := planOpOut{Op: po.op.verb(), Key: po.op.Key, Before: entrySide(po.before), After: opSide(po.op), Precondition: po.op.Cond.String()}
	if po.op.Cond.Kind != store.CondNone {
		h := po.holds
		out.PreconditionHolds = &h
	}
	return out
}

type dryRunOut struct {
	DryRun             bool            `json:"dry_run"`
	Operations         []planOpOut     `json:"operations"`
	RequestID          string          `json:"request_id"`
	Valid              bool            `json:"valid"`
	Duplicate          bool            `json:"duplicate,omitempty"`
	Error              string          `json:"error,omitempty"`
	PreconditionFailed []keyVersionOut `json:"precondition_failed,omitempty"`
}

// dryRun prints what the change set would change, then the gateway's
// verdict on it (Apply with validate_only).
func (g *globals) dryRun(ctx context.Context, cs *changeSet, id string) error {
	keys := make([]string, len(cs.Ops))
	for i, op := range cs.Ops {
		keys[i] = op.Key
	}
	cur, err := g.readKeys(ctx, keys)
	if err != nil {
		return err
	}
	plan := make([]planOp, len(cs.Ops))
	for i, op := range cs.Ops {
		plan[i] = planOp{op: op, before: cur[op.Key], holds: condHolds(op.Cond, cur[op.Key])}
	}

	req := &confgatev1.ApplyRequest{Operations: cs.protoOps(), RequestId: id, ValidateOnly: true}
	var (
		resp   *confgatev1.ApplyResponse
		failed failedKeys
	)
	for _, op := range req.Operations {
		failed.expectAbsent(op.GetKey(), op.GetPrecondition())
	}
	verr := g.callFirst(ctx, true, func(ctx context.Context, c confgatev1.ConfigServiceClient) error {
		var err error
		resp, err = c.Apply(ctx, req)
		failed.note(err)
		return err
	})
	if verr != nil && errCode(verr) == codes.FailedPrecondition && len(failed.pf.GetKeys()) > 0 {
		verr = failed.err("")
	}

	p := newPrinter(g.env.Stdout)
	if g.json() {
		out := dryRunOut{DryRun: true, Operations: []planOpOut{}, RequestID: id, Valid: verr == nil, Duplicate: resp.GetDuplicate()}
		for _, po := range plan {
			out.Operations = append(out.Operations, planJSON(po))
		}
		if verr != nil {
			out.Error = verr.Error()
			out.PreconditionFailed = failed.jsonOut()
		}
		if err := p.JSON(out); err != nil {
			return err
		}
		return verr
	}
	for _, po := range plan {
		if err := p.Linef("%s", planLine(po)); err != nil {
			return err
		}
	}
	if verr != nil {
		return fmt.Errorf("the gateway would refuse the change set: %w", verr)
	}
	if resp.GetDuplicate() {
		return p.Linef("already applied: request ID %s has landed; apply would write nothing (dry run: nothing written)", id)
	}
	return p.Linef("would apply %d operation%s (dry run: nothing written)", len(cs.Ops), plural(len(cs.Ops)))
}
