package store

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/internal/schema"
)

// SchemaError: a write breaks the schema in force for its key, or writes
// a schema document that does not compile, or a key under the reserved
// prefix that is not a schema.
type SchemaError struct {
	Key string
	// SchemaKey is the schema in force ("" for a document that does not
	// compile or a reserved key).
	SchemaKey string
	// Rule and Path (a JSON pointer inside the value) of the violation.
	Rule, Path, Msg string
}

func (e *SchemaError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "key %s", keyspace.Quote(e.Key))
	if e.SchemaKey != "" {
		fmt.Fprintf(&b, " breaks the schema %s", keyspace.Quote(e.SchemaKey))
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, ": rule %s", e.Rule)
	}
	if e.Path != "" {
		fmt.Fprintf(&b, " at %s", e.Path)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// maxFlagged bounds the keys remembered as breaking their schema, for
// /debug/state; the metric counts all.
const maxFlagged = 1000

// schemaState is the schemas in force and the applied entries that break
// them (written by foreign producers: the log is the truth).
type schemaState struct {
	set     schema.Set
	invalid map[string]string // schema keys whose document does not compile → why
	flagged map[string]string // keys whose value breaks its schema → why
}

// applySchemaEntry keeps the set in step with an applied entry under the
// schema prefix.
func (ss *schemaState) applySchemaEntry(e *Entry) {
	delete(ss.invalid, e.Key)
	if e.Deleted {
		ss.set.Delete(e.Key)
		return
	}
	sc, err := schema.Compile(e.Value)
	if err != nil {
		ss.set.Delete(e.Key)
		if ss.invalid == nil {
			ss.invalid = map[string]string{}
		}
		if len(ss.invalid) < maxFlagged {
			ss.invalid[e.Key] = err.Error()
		}
		return
	}
	ss.set.Put(e.Key, sc)
}

// checkApplied validates an applied entry against the schema in force and
// reports a violation (nil: none or not governed).
func (ss *schemaState) checkApplied(e *Entry) *SchemaError {
	delete(ss.flagged, e.Key)
	if e.Deleted || schema.IsReserved(e.Key) {
		return nil
	}
	sk, sc, ok := ss.set.For(e.Key)
	if !ok {
		return nil
	}
	err := sc.Validate(e.Value, e.ContentType)
	if err == nil {
		return nil
	}
	se := schemaErrorOf(e.Key, sk, err)
	if ss.flagged == nil {
		ss.flagged = map[string]string{}
	}
	if len(ss.flagged) < maxFlagged {
		ss.flagged[e.Key] = se.Error() + " (version " + strconv.Itoa(int(e.Partition)) + ":" + strconv.FormatInt(e.Offset, 10) + ")"
	}
	return se
}

func schemaErrorOf(key, schemaKey string, err error) *SchemaError {
	var v *schema.Violation
	if errors.As(err, &v) {
		return &SchemaError{Key: key, SchemaKey: schemaKey, Rule: v.Rule, Path: v.Path, Msg: v.Msg}
	}
	return &SchemaError{Key: key, SchemaKey: schemaKey, Msg: err.Error()}
}

// checkWriteSchema is the schema rule for one write against set: a write
// under the reserved prefix must be a schema document that compiles; any
// other put must pass its schema. It returns the compiled schema of a
// schema put.
func checkWriteSchema(set *schema.Set, w Write) (*schema.Schema, error) {
	if !schema.IsReserved(w.Key) {
		if w.Delete {
			return nil, nil
		}
		if sk, sc, ok := set.For(w.Key); ok {
			if err := sc.Validate(w.Value, w.ContentType); err != nil {
				return nil, schemaErrorOf(w.Key, sk, err)
			}
		}
		return nil, nil
	}
	if !schema.IsSchemaKey(w.Key) {
		return nil, &SchemaError{Key: w.Key, Rule: "reserved", Msg: fmt.Sprintf("keys under %q are reserved; only schemas may be written there, as %s<path>/* (every key under <path>/), %s* (every key) or %s<key> (one key)", schema.ReservedPrefix, schema.KeyPrefix, schema.KeyPrefix, schema.KeyPrefix)}
	}
	if w.Delete {
		return nil, nil
	}
	sc, err := schema.Compile(w.Value)
	if err != nil {
		return nil, &SchemaError{Key: w.Key, Rule: "schema", Msg: "the schema document does not compile: " + err.Error()}
	}
	return sc, nil
}

// schemaOverlay checks the Commits of one transaction in order, each
// against the schemas as the earlier ones leave them.
type schemaOverlay struct {
	base *schema.Set
	cur  *schema.Set // base until a Commit changes a schema
	next *schema.Set // cur with the Commit being checked
}

func newSchemaOverlay(ss *schemaState) *schemaOverlay {
	return &schemaOverlay{base: &ss.set, cur: &ss.set}
}

// check validates ops: schema documents first (a change set may change a
// schema and the values it governs together), then every put against the
// schemas as they would be after ops, then the entries a changed schema
// governs that ops leave alone. get reads a key's current entry.
func (o *schemaOverlay) check(ops []Op, get func(string) *Entry, st *state) error {
	o.next = o.cur
	changed := map[string]bool{}
	for _, op := range ops {
		if !schema.IsReserved(op.Key) {
			continue
		}
		sc, err := checkWriteSchema(o.next, op.Write)
		if err != nil {
			return err
		}
		if o.next == o.cur {
			o.next = o.cur.Clone()
		}
		if sc == nil {
			o.next.Delete(op.Key)
		} else {
			o.next.Put(op.Key, sc)
		}
		changed[op.Key] = true
	}
	written := make(map[string]bool, len(ops))
	for _, op := range ops {
		written[op.Key] = true
		if schema.IsReserved(op.Key) {
			continue
		}
		if _, err := checkWriteSchema(o.next, op.Write); err != nil {
			return err
		}
	}
	for sk := range changed {
		pattern, exact, _ := schema.Target(sk)
		if err := o.checkGoverned(pattern, exact, written, get, st); err != nil {
			return err
		}
	}
	return nil
}

// maxGovernedScan bounds the entries a schema change re-checks.
const maxGovernedScan = 100000

// checkGoverned re-checks the current entries a changed schema pattern
// governs, so a schema is never published that the config it governs
// already breaks (fix both in one change set).
func (o *schemaOverlay) checkGoverned(pattern string, exact bool, written map[string]bool, get func(string) *Entry, st *state) error {
	var bad error
	n := 0
	visit := func(e *Entry) bool {
		if e.Deleted || written[e.Key] || schema.IsReserved(e.Key) {
			return true
		}
		if n++; n > maxGovernedScan {
			return false
		}
		if sk, sc, ok := o.next.For(e.Key); ok {
			if err := sc.Validate(e.Value, e.ContentType); err != nil {
				se := schemaErrorOf(e.Key, sk, err)
				se.Msg += fmt.Sprintf(" (the current value, version %d:%d: change it in the same change set as the schema)", e.Partition, e.Offset)
				bad = se
				return false
			}
		}
		return true
	}
	if exact {
		if e := get(pattern); e != nil {
			visit(e)
		}
		return bad
	}
	st.tree.AscendGreaterOrEqual(&Entry{Key: pattern}, func(e *Entry) bool {
		if !strings.HasPrefix(e.Key, pattern) {
			return false
		}
		return visit(e)
	})
	return bad
}

func (o *schemaOverlay) commit() { o.cur = o.next }
