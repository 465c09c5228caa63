package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/internal/schema"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/spf13/cobra"
)

// fetchSchemas reads the schema entries of a gateway (one snapshot of
// schema.KeyPrefix).
func (g *globals) fetchSchemas(ctx context.Context) ([]*confgatev1.Entry, error) {
	entries, _, err := g.getSnapshot(ctx, &confgatev1.GetSnapshotRequest{Selector: &confgatev1.Selector{Prefixes: []string{schema.KeyPrefix}}})
	return entries, err
}

// problem is one reason a change set would be refused.
type problem struct {
	Operation int    `json:"operation"`
	Key       string `json:"key"`
	Schema    string `json:"schema,omitempty"`
	Rule      string `json:"rule"`
	Path      string `json:"path"`
	Message   string `json:"message"`
}

func (p problem) text() string {
	s := fmt.Sprintf("operation %d: %s: rule %s", p.Operation, displayKey(p.Key), p.Rule)
	if p.Path != "" {
		s += " at " + displayText(p.Path)
	}
	s += ": " + displayText(p.Message)
	if p.Schema != "" {
		s += " (schema " + displayKey(p.Schema) + ")"
	}
	return s
}

// validation is the offline check of a change set against schemas.
type validation struct {
	problems  []problem
	checked   int // puts checked against a schema
	unchecked int // puts no schema governs
	schemas   int // schemas in force after the change set
}

// validateChangeSet checks every put of cs against the schemas it would be
// checked against once applied: the gateway's (set) with the change set's
// own schema puts and deletes applied first. Schema documents the change
// set writes must compile; nothing else may be written under
// schema.ReservedPrefix.
func validateChangeSet(cs *changeSet, set *schema.Set) validation {
	var v validation
	after := set.Clone()
	for _, op := range cs.Ops {
		if !schema.IsReserved(op.Key) {
			continue
		}
		if !schema.IsSchemaKey(op.Key) {
			v.problems = append(v.problems, problem{Operation: op.Index, Key: op.Key, Rule: "reserved",
				Message: fmt.Sprintf("keys under %s are reserved: only schema keys (%s<key>, %s<path>/* or %s*) may be written", schema.ReservedPrefix, schema.KeyPrefix, schema.KeyPrefix, schema.KeyPrefix)})
			continue
		}
		if op.Delete {
			after.Delete(op.Key)
			continue
		}
		sc, err := schema.Compile(op.Value)
		if err != nil {
			v.problems = append(v.problems, problem{Operation: op.Index, Key: op.Key, Rule: "schema", Message: err.Error()})
			continue
		}
		after.Put(op.Key, sc)
	}
	v.schemas = after.Len()
	for _, op := range cs.Ops {
		if op.Delete || schema.IsReserved(op.Key) {
			continue
		}
		key, sc, ok := after.For(op.Key)
		if !ok {
			v.unchecked++
			continue
		}
		v.checked++
		err := sc.Validate(op.Value, op.ContentType)
		if err == nil {
			continue
		}
		p := problem{Operation: op.Index, Key: op.Key, Schema: key, Rule: "schema", Message: err.Error()}
		var vi *schema.Violation
		if errors.As(err, &vi) {
			p.Rule, p.Path, p.Message = vi.Rule, vi.Path, vi.Msg
		}
		v.problems = append(v.problems, p)
	}
	return v
}

type validateEndOut struct {
	Operations int  `json:"operations"`
	Checked    int  `json:"checked"`
	Unchecked  int  `json:"unchecked"`
	Schemas    int  `json:"schemas"`
	Skipped    int  `json:"skipped_schemas"`
	Violations int  `json:"violations"`
	Valid      bool `json:"valid"`
}

func newValidateCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a change-set file against the gateway's schemas, writing nothing",
		Long: `Check a change-set file (see apply; FILE - reads standard input) without
writing or sending it: its structure, then every put against the schema that
governs its key, offline. The schemas are the gateway's (the entries under
` + schema.KeyPrefix + `) as they would be after the file: a file may change
schemas and values together, and its schema puts (which must compile) and
deletes count. A gateway schema that does not compile is skipped, with a
warning on stderr. Keys under ` + schema.ReservedPrefix + ` other than schema
keys are refused, as the gateway would.

Prints every violation: "operation N: KEY: rule RULE at PATH: MESSAGE
(schema SCHEMA_KEY)", then a summary; JSON: one object per violation
{operation, key, schema, rule, path, message}, then {operations, checked,
unchecked, schemas, skipped_schemas, violations, valid}. Exit status 2 when
there is any violation.

Preconditions and the gateway's other rules are not checked here: apply
--dry-run asks the gateway to check everything.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := readChangeSet(args[0], g.env.Stdin)
			if err != nil {
				return err
			}
			ctx, cancel := g.callContext(cmd.Context())
			defer cancel()
			entries, err := g.fetchSchemas(ctx)
			if err != nil {
				return err
			}
			set := &schema.Set{}
			skipped := 0
			for _, e := range entries {
				if !schema.IsSchemaKey(e.GetKey()) {
					continue
				}
				sc, err := schema.Compile(e.GetValue())
				if err != nil {
					skipped++
					fmt.Fprintf(g.env.Stderr, "confgate: warning: the gateway's schema %s does not compile, skipped: %s\n", keyspace.Quote(e.GetKey()), oneLine(err.Error()))
					continue
				}
				set.Put(e.GetKey(), sc)
			}
			v := validateChangeSet(cs, set)
			p := newPrinter(g.env.Stdout)
			for _, pr := range v.problems {
				if g.json() {
					err = p.JSON(pr)
				} else {
					err = p.Linef("%s", pr.text())
				}
				if err != nil {
					return err
				}
			}
			if g.json() {
				err = p.JSON(validateEndOut{Operations: len(cs.Ops), Checked: v.checked, Unchecked: v.unchecked, Schemas: v.schemas,
					Skipped: skipped, Violations: len(v.problems), Valid: len(v.problems) == 0})
			} else {
				err = p.Linef("# %d operation%s: %d put%s checked against %d schema%s, %d governed by none; %d violation%s",
					len(cs.Ops), plural(len(cs.Ops)), v.checked, plural(v.checked), v.schemas, plural(v.schemas), v.unchecked, len(v.problems), plural(len(v.problems)))
			}
			if err != nil {
				return err
			}
			if len(v.problems) > 0 {
				return fmt.Errorf("%s: %d violation%s", cs.Name, len(v.problems), plural(len(v.problems)))
			}
			return nil
		},
	}
	return cmd
}
