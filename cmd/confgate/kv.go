package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/confgate/confgate/client"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// parseCursorFlag reads a cursor given on the command line; empty is none.
func parseCursorFlag(cmd *cobra.Command, flag, s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	c, err := cursor.Parse(s)
	if err != nil {
		return nil, usagef(cmd, "--%s: %v", flag, err)
	}
	return c.Encode(), nil
}

func newGetCmd(g *globals) *cobra.Command {
	var (
		minCursor string
		raw       bool
	)
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print the value of a key",
		Long: `Print the value of a key.

Text output is the value itself (followed by a newline when it is UTF-8 text),
so $(confgate get KEY) is the value. On a terminal, a value that holds control
characters other than tab and newline, invisible or formatting characters
(such as bidirectional controls) or bytes that are not UTF-8 is shown on one
line instead, Go-quoted or as "(base64) ...", with a note on stderr: the
terminal cannot be made to act on it or to show something else. --raw prints
the bytes as they are, as does any output that is not a terminal (a pipe or
a file). JSON output is one object with key, value (base64 with
"value_encoding":"base64" when not UTF-8), content_type, headers, version
{partition, offset} and the cursor the entry was read at; such characters
are escaped as \uXXXX in it.

A missing key prints an error and exits with status 1.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			req := &confgatev1.GetRequest{Key: key}
			var err error
			if req.MinCursor, err = parseCursorFlag(cmd, "min-cursor", minCursor); err != nil {
				return err
			}
			ctx, cancel := g.callContext(cmd.Context())
			defer cancel()
			var resp *confgatev1.GetResponse
			err = g.callFirst(ctx, true, func(ctx context.Context, c confgatev1.ConfigServiceClient) error {
				var err error
				resp, err = c.Get(ctx, req)
				return err
			})
			if errCode(err) == codes.NotFound {
				return &codeError{exitNotFound, fmt.Errorf("key %s not found", keyspace.Quote(key))}
			}
			if err != nil {
				return err
			}
			p := newPrinter(g.env.Stdout)
			if g.json() {
				return p.JSON(entryJSON("", resp.GetEntry(), resp.GetCursor()))
			}
			v := resp.GetEntry().GetValue()
			if !raw && isTerminal(g.env.Stdout) && !terminalSafe(v) {
				fmt.Fprintf(g.env.Stderr, "confgate: the value of %s holds characters a terminal would act on or hide (or is not UTF-8): shown on one line, escaped; --raw prints it as is\n", keyspace.Quote(key))
				return p.Linef("%s", displayValue(v))
			}
			if err := p.Raw(v); err != nil {
				return err
			}
			if utf8.Valid(v) {
				return p.Raw([]byte{'\n'})
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&minCursor, "min-cursor", "", "read-your-writes: the gateway first waits (bounded) until it has applied this cursor, as printed by put or delete")
	cmd.Flags().BoolVar(&raw, "raw", false, "print the value's bytes as they are, also on a terminal (by default a terminal gets control, invisible and formatting characters escaped)")
	return cmd
}

func newPutCmd(g *globals) *cobra.Command {
	var (
		contentType string
		headers     []string
		wait        bool
		wf          writeFlags
	)
	cmd := &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Write a value (VALUE - reads standard input)",
		Long: `Write a value to a key. The gateway answers once Kafka acknowledged the write
with acks=all. VALUE - reads all of standard input, for files and binary values:

  confgate put search/ranking/weights - --content-type application/json < weights.json

Prints the new version and a cursor that includes the write
(partition=P offset=O cursor=C); pass the cursor to get --min-cursor or
watch --from to read the write back from any gateway.
` + writeFlagsHelp,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			value := []byte(args[1])
			if args[1] == "-" {
				var err error
				if value, err = io.ReadAll(g.env.Stdin); err != nil {
					return fmt.Errorf("read the value from standard input: %w", err)
				}
			}
			req := &confgatev1.PutRequest{Key: key, Value: value, ContentType: contentType, WaitApplied: wait}
			var err error
			if req.Precondition, req.RequestId, err = wf.resolve(cmd); err != nil {
				return err
			}
			share, err := wf.fleetShare(cmd)
			if err != nil {
				return err
			}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, "=")
				if !ok || k == "" {
					return usagef(cmd, "--header %q: want key=value", h)
				}
				req.Headers = append(req.Headers, &confgatev1.Header{Key: k, Value: []byte(v)})
			}
			ctx, cancel := g.callContext(cmd.Context())
			defer cancel()
			var (
				resp   *confgatev1.PutResponse
				failed failedKeys
			)
			failed.expectAbsent(key, req.Precondition)
			// With a request ID the write is retry-safe: a gateway that
			// failed UNAVAILABLE after the write landed makes the retry
			// answer the original result, marked duplicate.
			err = g.callFirst(ctx, true, func(ctx context.Context, c confgatev1.ConfigServiceClient) error {
				var err error
				resp, err = c.Put(ctx, req)
				failed.note(err)
				return err
			})
			if err != nil {
				return g.writeError(err, failed, "")
			}
			if err := printWriteResult(g, key, req.RequestId, resp.GetVersion(), resp.GetCursor(), resp.GetDuplicate()); err != nil {
				return err
			}
			return wf.awaitFleet(cmd, g, key, resp.GetCursor(), share)
		},
	}
	f := cmd.Flags()
	wf.register(f, "write")
	f.StringVar(&contentType, "content-type", "", "content type stored with the value (the record's content-type header), e.g. application/json")
	f.StringArrayVar(&headers, "header", nil, "extra record header key=value; repeat for several")
	f.BoolVar(&wait, "wait", false, "answer only once the gateway has applied the write, so a read from it right after sees it")
	return cmd
}

func newDeleteCmd(g *globals) *cobra.Command {
	var (
		wait bool
		wf   writeFlags
	)
	cmd := &cobra.Command{
		Use:   "delete KEY",
		Short: "Delete a key",
		Long: `Delete a key: writes a tombstone, acknowledged by Kafka with acks=all.
Prints the tombstone's version and a cursor that includes it
(partition=P offset=O cursor=C). Deleting a missing key is not an error
(unless --if-version says it must be live).
` + writeFlagsHelp,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			req := &confgatev1.DeleteRequest{Key: key, WaitApplied: wait}
			var err error
			if req.Precondition, req.RequestId, err = wf.resolve(cmd); err != nil {
				return err
			}
			share, err := wf.fleetShare(cmd)
			if err != nil {
				return err
			}
			ctx, cancel := g.callContext(cmd.Context())
			defer cancel()
			var (
				resp   *confgatev1.DeleteResponse
				failed failedKeys
			)
			failed.expectAbsent(key, req.Precondition)
			// Retry-safe with its request ID, like put.
			err = g.callFirst(ctx, true, func(ctx context.Context, c confgatev1.ConfigServiceClient) error {
				var err error
				resp, err = c.Delete(ctx, req)
				failed.note(err)
				return err
			})
			if err != nil {
				return g.writeError(err, failed, "")
			}
			if err := printWriteResult(g, key, req.RequestId, resp.GetVersion(), resp.GetCursor(), resp.GetDuplicate()); err != nil {
				return err
			}
			return wf.awaitFleet(cmd, g, key, resp.GetCursor(), share)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "answer only once the gateway has applied the delete")
	wf.register(cmd.Flags(), "delete")
	return cmd
}

// writeFlagsHelp documents writeFlags in put's and delete's help.
const writeFlagsHelp = `
Conditional writes: --if-absent writes only when the key is absent (never
written, or deleted); --if-version PARTITION:OFFSET only when the key is live
at exactly that version (as put, get -o json and diff print it). Of two
conditional writes racing on a key, through any gateways, exactly one wins;
the other writes nothing and fails with "precondition failed: KEY is at P:O"
(or "KEY is absent"), exit status 2; with -o json the current versions are
also printed on stdout as {"precondition_failed": [{key, version|null}]}.

Every write carries a request ID: --request-id, or 32 random hex digits by
default. When a write with the same ID has already landed, the gateway writes
nothing and answers with the original version, printed with "duplicate"
(JSON: "duplicate": true). That makes retries safe: a write that fails
UNAVAILABLE is retried on the next --addr with the same ID, and a script can
retry a whole command with the ID it chose. An ID is up to 128 printable
ASCII characters without spaces; reusing one for a different write is an
error.`

// writeFlags are the precondition and request ID flags of put and delete.
type writeFlags struct {
	ifAbsent         bool
	ifVersion        string
	requestID        string
	waitFleet        string
	waitFleetTimeout time.Duration
}

func (w *writeFlags) register(f *pflag.FlagSet, what string) {
	f.BoolVar(&w.ifAbsent, "if-absent", false, "precondition: "+what+" only if the key is absent (never written, or deleted)")
	f.StringVar(&w.ifVersion, "if-version", "", "precondition: "+what+" only if the key is live at exactly this version, PARTITION:OFFSET (as put and get -o json print it)")
	f.StringVar(&w.requestID, "request-id", "", "the write's request ID, to retry it safely (default: 32 random hex digits)")
	f.StringVar(&w.waitFleet, "wait-fleet", "", "after the "+what+", wait until this share of the connected clients whose selector covers the key (as the fleet view knows them, see confgate fleet) have applied it, e.g. 95%; fails at --wait-fleet-timeout naming those that had not")
	f.DurationVar(&w.waitFleetTimeout, "wait-fleet-timeout", 30*time.Second, "bound of --wait-fleet")
}

// fleetShare parses --wait-fleet ("95%" or "0.95"); 0 when not given.
func (w *writeFlags) fleetShare(cmd *cobra.Command) (float64, error) {
	if w.waitFleet == "" {
		return 0, nil
	}
	s, pct := strings.CutSuffix(w.waitFleet, "%")
	v, err := strconv.ParseFloat(s, 64)
	if pct {
		v /= 100
	}
	if err != nil || v <= 0 || v > 1 {
		return 0, usagef(cmd, "--wait-fleet %q: want a share such as 95%% or 0.95, more than 0 and at most 100%%", w.waitFleet)
	}
	return v, nil
}

// awaitFleet waits, after a write, for the share of the fleet that must
// have applied it, and says how far it got.
func (w *writeFlags) awaitFleet(cmd *cobra.Command, g *globals, key string, written []byte, share float64) error {
	if share == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), w.waitFleetTimeout)
	defer cancel()
	var prog client.FleetProgress
	err := g.callFirst(ctx, true, func(ctx context.Context, c confgatev1.ConfigServiceClient) error {
		var err error
		prog, err = client.WaitFleet(ctx, c, key, written, share, 0)
		return err
	})
	pct := 100.0
	if prog.Total > 0 {
		pct = 100 * float64(prog.Applied) / float64(prog.Total)
	}
	if err != nil {
		return fmt.Errorf("--wait-fleet %s: %w", w.waitFleet, err)
	}
	fmt.Fprintf(g.env.Stderr, "confgate: %d of %d clients whose selector covers %s applied the write (%.0f%%)\n", prog.Applied, prog.Total, key, pct)
	return nil
}

// resolve checks the flags and returns the precondition (nil for none)
// and the request ID (generated when not given).
func (w *writeFlags) resolve(cmd *cobra.Command) (*confgatev1.Precondition, string, error) {
	var cond store.Cond
	switch {
	case w.ifAbsent && cmd.Flags().Changed("if-version"):
		return nil, "", usagef(cmd, "--if-absent and --if-version are exclusive: give one precondition")
	case w.ifAbsent:
		cond = store.Cond{Kind: store.CondAbsent}
	case cmd.Flags().Changed("if-version"):
		c, err := store.ParseCond(w.ifVersion)
		if err == nil && c.Kind != store.CondVersion {
			err = errors.New(`"absent" is not a version: use --if-absent`)
		}
		if err != nil {
			return nil, "", usagef(cmd, "--if-version: %v", err)
		}
		cond = c
	}
	id, err := requestIDFlag(cmd, w.requestID)
	if err != nil {
		return nil, "", err
	}
	return condProto(cond), id, nil
}

// requestIDFlag is the value of --request-id: a generated ID when not
// given; an empty one is a mistake (a script whose variable is unset).
func requestIDFlag(cmd *cobra.Command, id string) (string, error) {
	if !cmd.Flags().Changed("request-id") {
		return newRequestID(), nil
	}
	if id == "" {
		return "", usagef(cmd, "--request-id is empty: give an ID, or leave the flag out for a generated one")
	}
	if err := store.CheckRequestID(id); err != nil {
		return "", usagef(cmd, "--request-id: %v", err)
	}
	return id, nil
}

// newRequestID is 16 random bytes in hex.
func newRequestID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}

// failedKeys keeps the PreconditionFailure detail of a call's error, which
// callFirst's error no longer carries.
type failedKeys struct {
	pf *confgatev1.PreconditionFailure
	// absent and version are the keys whose precondition was "absent",
	// or a version. A key is reported without a version when it is absent,
	// and also when the gateway decided it in the same Kafka transaction
	// as a concurrent write of the key, whose version is not known yet:
	// for a key required absent that must be the case.
	absent, version map[string]bool
}

// expectAbsent notes the precondition of a key.
func (f *failedKeys) expectAbsent(key string, c *confgatev1.Precondition) {
	if f.absent == nil {
		f.absent, f.version = map[string]bool{}, map[string]bool{}
	}
	switch {
	case c.GetAbsent():
		f.absent[key] = true
	case c.GetVersion() != nil:
		f.version[key] = true
	}
}

// pending reports whether kv is a key written concurrently, in the same
// transaction that refused the precondition.
func (f *failedKeys) pending(kv *confgatev1.KeyVersion) bool {
	return kv.GetVersion() == nil && f.absent[kv.GetKey()]
}

func (f *failedKeys) note(err error) {
	if err == nil {
		return
	}
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return
	}
	for _, d := range st.Details() {
		if pf, ok := d.(*confgatev1.PreconditionFailure); ok {
			f.pf = pf
			return
		}
	}
}

// keyStates says where each failed key is: "a is at 0:42, b is absent".
func (f *failedKeys) keyStates() string {
	var parts []string
	for _, kv := range f.pf.GetKeys() {
		if f.pending(kv) {
			parts = append(parts, displayKey(kv.GetKey())+" is being written by a concurrent write (no version yet)")
		} else if kv.GetVersion() == nil && f.version[kv.GetKey()] {
			parts = append(parts, displayKey(kv.GetKey())+" is absent (or being written by a concurrent write, no version yet)")
		} else if kv.GetVersion() == nil {
			parts = append(parts, displayKey(kv.GetKey())+" is absent")
		} else {
			parts = append(parts, displayKey(kv.GetKey())+" is at "+versionPO(kv.GetVersion()))
		}
	}
	return strings.Join(parts, ", ")
}

type keyVersionOut struct {
	Key     string      `json:"key"`
	Version *versionOut `json:"version"`
	// Pending: written by a concurrent write, version not known yet.
	Pending bool `json:"pending,omitempty"`
}

type preconditionFailedOut struct {
	PreconditionFailed []keyVersionOut `json:"precondition_failed"`
}

// jsonOut is the failed keys in JSON (nil without a detail).
func (f *failedKeys) jsonOut() []keyVersionOut {
	if f.pf == nil {
		return nil
	}
	out := []keyVersionOut{}
	for _, kv := range f.pf.GetKeys() {
		o := keyVersionOut{Key: kv.GetKey(), Pending: f.pending(kv)}
		if kv.GetVersion() != nil {
			v := versionJSON(kv.GetVersion())
			o.Version = &v
		}
		out = append(out, o)
	}
	return out
}

// err says where each failed key is, after hint when given.
func (f *failedKeys) err(hint string) error {
	msg := "precondition failed: " + f.keyStates()
	if hint != "" {
		msg = hint + " (" + f.keyStates() + ")"
	}
	return &rpcError{codes.FailedPrecondition, msg}
}

// writeError is the error of a failed write: a failed precondition says
// where each key is (and, with -o json, prints it on stdout too), with
// hint after it; anything else is err.
func (g *globals) writeError(err error, failed failedKeys, hint string) error {
	if errCode(err) != codes.FailedPrecondition || failed.pf == nil || len(failed.pf.GetKeys()) == 0 {
		return err
	}
	if g.json() {
		if perr := newPrinter(g.env.Stdout).JSON(preconditionFailedOut{PreconditionFailed: failed.jsonOut()}); perr != nil {
			return perr
		}
	}
	return failed.err(hint)
}

// writeResultOut is the JSON answer to put and delete.
type writeResultOut struct {
	Key       string     `json:"key"`
	Version   versionOut `json:"version"`
	Cursor    string     `json:"cursor"`
	RequestID string     `json:"request_id"`
	Duplicate bool       `json:"duplicate,omitempty"`
}

// printWriteResult prints the answer to put or delete: the line printWrite
// prints, with " duplicate" after it when the request ID had already
// landed (and a note on stderr).
func printWriteResult(g *globals, key, requestID string, v *confgatev1.Version, cursor []byte, duplicate bool) error {
	p := newPrinter(g.env.Stdout)
	if duplicate {
		fmt.Fprintf(g.env.Stderr, "confgate: request ID %s had already landed: nothing was written; the version is the original write's\n", requestID)
	}
	if g.json() {
		return p.JSON(writeResultOut{Key: key, Version: versionJSON(v), Cursor: cursorText(cursor), RequestID: requestID, Duplicate: duplicate})
	}
	if duplicate {
		return p.Linef("partition=%d offset=%d cursor=%s duplicate", v.GetPartition(), v.GetOffset(), cursorText(cursor))
	}
	return printWrite(p, false, key, v, cursor)
}
