package gateway

import (
	"context"
	"errors"
	"fmt"

	"github.com/confgate/confgate/internal/cursor"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// opIn is one operation of a write through the serialization point, as
// the request gave it.
type opIn struct {
	w    store.Write
	cond *confgatev1.Precondition
}

// Apply writes a change set.
func (g *Gateway) Apply(ctx context.Context, req *confgatev1.ApplyRequest) (*confgatev1.ApplyResponse, error) {
	ops := req.GetOperations()
	switch {
	case len(ops) == 0:
		return nil, invalidArg("operations", "none given: a change set has at least one put or delete")
	case len(ops) > store.MaxSetOps:
		return nil, invalidArg("operations", fmt.Sprintf("%d given, more than the limit %d: split the change into smaller sets", len(ops), store.MaxSetOps))
	}
	in := make([]opIn, len(ops))
	for i, op := range ops {
		field := fmt.Sprintf("operations[%d]", i)
		if err := g.validateKey(op.GetKey()); err != nil {
			return nil, prefixStatus(err, field)
		}
		w := store.Write{Key: op.GetKey(), Delete: op.GetDelete()}
		if op.GetDelete() {
			if len(op.GetValue()) > 0 || op.GetContentType() != "" || len(op.GetHeaders()) > 0 {
				return nil, invalidArg(field, "a delete carries no value, content type or headers")
			}
		} else {
			if n := len(op.GetValue()); n > g.cfg.MaxValueBytes {
				return nil, invalidArg(field+".value", fmt.Sprintf("is %d bytes, more than the limit %d: keep config entries small", n, g.cfg.MaxValueBytes))
			}
			if n := len(op.GetContentType()); n > store.MaxContentTypeBytes {
				return nil, invalidArg(field+".content_type", fmt.Sprintf("is %d bytes, longer than the limit %d", n, store.MaxContentTypeBytes))
			}
			w.Value, w.ContentType = op.GetValue(), op.GetContentType()
			for _, h := range op.GetHeaders() {
				w.Headers = append(w.Headers, store.Header{Key: h.GetKey(), Value: h.GetValue()})
			}
			if err := checkRequestHeaders(w); err != nil {
				return nil, prefixStatus(err, field)
			}
		}
		in[i] = opIn{w: w, cond: op.GetPrecondition()}
	}
	return g.commit(ctx, methodApply, in, req.GetRequestId(), req.GetWaitApplied(), req.GetValidateOnly())
}

// prefixStatus puts field before the message of an INVALID_ARGUMENT.
func prefixStatus(err error, field string) error {
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		return err
	}
	return invalidArg(field, st.Message())
}

// condOf converts a request's precondition.
func condOf(field string, pc *confgatev1.Precondition) (store.Cond, error) {
	switch c := pc.GetCondition().(type) {
	case nil:
		if pc != nil {
			return store.Cond{}, invalidArg(field, "empty precondition: set absent (true) or version")
		}
		return store.Cond{}, nil
	case *confgatev1.Precondition_Absent:
		if !c.Absent {
			return store.Cond{}, invalidArg(field, "absent must be true (to require a live key, give its version)")
		}
		return store.Cond{Kind: store.CondAbsent}, nil
	case *confgatev1.Precondition_Version:
		v := c.Version
		if v.GetPartition() < 0 || v.GetOffset() < 0 {
			return store.Cond{}, invalidArg(field, fmt.Sprintf("version %d:%d is negative: give the version a read returned", v.GetPartition(), v.GetOffset()))
		}
		return store.Cond{Kind: store.CondVersion, Partition: v.GetPartition(), Offset: v.GetOffset()}, nil
	}
	return store.Cond{}, invalidArg(field, "unknown precondition")
}

// commit authorizes the keys, writes through the serialization point and
// audits the outcome.
func (g *Gateway) commit(ctx context.Context, method string, in []opIn, requestID string, wait, validateOnly bool) (*confgatev1.ApplyResponse, error) {
	if err := store.CheckRequestID(requestID); err != nil {
		return nil, invalidArg("request_id", err.Error())
	}
	keys := make([]string, len(in))
	c := store.Commit{RequestID: requestID, ValidateOnly: validateOnly, Ops: make([]store.Op, len(in))}
	for i, op := range in {
		field := "precondition"
		if method == methodApply {
			field = fmt.Sprintf("operations[%d].precondition", i)
		}
		cond, err := condOf(field, op.cond)
		if err != nil {
			return nil, err
		}
		keys[i] = op.w.Key
		c.Ops[i] = store.Op{Write: op.w, Cond: cond}
	}
	pr, err := g.authorizeWriteKeys(ctx, method, keys)
	if err != nil {
		return nil, err
	}
	if !g.src.Ready() {
		return nil, errNotReady
	}
	for i := range c.Ops {
		c.Ops[i].Headers = append(c.Ops[i].Headers, g.auditHeaders(pr)...)
	}
	res, err := g.src.Commit(ctx, c)
	auditArgs := []any{"principal", pr.Name, "auth", pr.Method, "method", method, "keys", len(keys), "key", keys[0], "request_id", requestID}
	if err != nil {
		err = commitStatus(ctx, err)
		g.audit.Info("write", append(auditArgs, "result", status.Code(err).String())...)
		return nil, err
	}
	out := &confgatev1.ApplyResponse{Cursor: res.Cursor.Encode(), Duplicate: res.Duplicate}
	for _, v := range res.Versions {
		out.Versions = append(out.Versions, &confgatev1.Version{Partition: v.Partition, Offset: v.Offset})
	}
	if !validateOnly {
		args := append(auditArgs, "result", codes.OK.String(), "duplicate", res.Duplicate)
		if len(res.Versions) > 0 {
			args = append(args, "partition", res.Versions[0].Partition, "offset", res.Versions[0].Offset)
		}
		g.audit.Info("write", args...)
	}
	if wait && !validateOnly {
		if err := g.waitApplied(ctx, "the write", res.Cursor); err != nil {
			st := status.Convert(err)
			return nil, status.Errorf(st.Code(), "written (cursor %s), but: %s", res.Cursor.String(), st.Message())
		}
	}
	return out, nil
}

// commitStatus maps a Commit error to the status the caller gets.
func commitStatus(ctx context.Context, err error) error {
	var pe *store.PreconditionError
	var se *store.SchemaError
	var re *store.RuleError
	switch {
	case errors.As(err, &pe):
		st := status.New(codes.FailedPrecondition, pe.Error())
		d := &confgatev1.PreconditionFailure{}
		for _, k := range pe.Keys {
			kv := &confgatev1.KeyVersion{Key: k.Key}
			if k.Live && !k.Pending {
				kv.Version = &confgatev1.Version{Partition: k.Version.Partition, Offset: k.Version.Offset}
			}
			d.Keys = append(d.Keys, kv)
		}
		if ds, derr := st.WithDetails(d); derr == nil {
			st = ds
		}
		return st.Err()
	case errors.As(err, &se):
		field := "value"
		if se.Path != "" {
			field = "value" + se.Path
		}
		return invalidArg(field, se.Error())
	case errors.As(err, &re):
		return invalidArg(re.Field, re.Msg)
	case errors.Is(err, store.ErrRequestIDReused):
		return invalidArg("request_id", err.Error())
	case errors.Is(err, store.ErrNotReady):
		return errNotReady
	}
	return produceStatus(ctx, err)
}

// Diff streams the changes under a prefix between two cursors.
func (g *Gateway) Diff(req *confgatev1.DiffRequest, stream confgatev1.ConfigService_DiffServer) error {
	ctx := stream.Context()
	sel, err := g.parseSelector(&confgatev1.Selector{Prefixes: []string{req.GetPrefix()}})
	if err != nil {
		return err
	}
	if _, err := g.authorizeRead(ctx, methodDiff, sel); err != nil {
		return err
	}
	if len(req.GetFromCursor()) == 0 {
		return invalidArg("from_cursor", "required: the older cursor, as put, get or watch print it")
	}
	from, err := parseCursor("from_cursor", req.GetFromCursor())
	if err != nil {
		return err
	}
	var to cursor.Cursor
	if len(req.GetToCursor()) > 0 {
		if to, err = parseCursor("to_cursor", req.GetToCursor()); err != nil {
			return err
		}
		if err := g.waitApplied(ctx, "to_cursor", to); err != nil {
			return err
		}
	}
	diffs, to, err := g.src.Diff(req.GetPrefix(), from, to)
	switch {
	case errors.Is(err, store.ErrDiffRange):
		return status.Errorf(codes.OutOfRange, "this gateway's change history does not reach back to from_cursor (%v); diff from a newer cursor, or raise --history-bytes and --history-batches", err)
	case errors.Is(err, store.ErrTopicChanged):
		return status.Error(codes.FailedPrecondition, "a cursor belongs to another topic (or another incarnation of it)")
	case errors.Is(err, store.ErrBehind):
		return status.Error(codes.Unavailable, "this gateway has not applied to_cursor yet: retry")
	case errors.Is(err, store.ErrBadDiff):
		return invalidArg("to_cursor", err.Error())
	case err != nil:
		return errNotReady
	}
	fromB, toB := from.Encode(), to.Encode()
	resp := &confgatev1.DiffResponse{FromCursor: fromB, ToCursor: toB}
	size := 0
	for _, d := range diffs {
		kd := &confgatev1.KeyDiff{Key: d.Key}
		if d.Before != nil {
			kd.Before = protoEntry(d.Before)
		}
		if d.After != nil {
			kd.After = protoEntry(d.After)
		}
		n := entrySize(d.Before) + entrySize(d.After)
		if size > 0 && size+n > g.cfg.ChunkBytes {
			if err := stream.Send(resp); err != nil {
				return err
			}
			resp, size = &confgatev1.DiffResponse{FromCursor: fromB, ToCursor: toB}, 0
		}
		resp.Changes = append(resp.Changes, kd)
		size += n
	}
	resp.Last = true
	return stream.Send(resp)
}

func entrySize(e *store.Entry) int {
	if e == nil {
		return 0
	}
	return int(e.Size())
}
