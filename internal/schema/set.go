package schema

import "maps"

// Set holds the compiled schemas in force, by schema key. It is not safe
// for concurrent use: its owner (a gateway's store, a CLI run) locks.
//
// The zero Set is empty and ready to use.
type Set struct {
	// exact and prefix index the schemas by their Target pattern; the
	// mapping from schema key to pattern is one to one, so each pattern
	// has at most one schema.
	exact  map[string]entry
	prefix map[string]entry
}

type entry struct {
	key string
	sc  *Schema
}

// Put makes sc the schema stored under schemaKey, replacing any earlier
// one. A nil sc deletes. Keys that are not schema keys (IsSchemaKey false)
// are ignored: they govern nothing.
func (s *Set) Put(schemaKey string, sc *Schema) {
	pattern, exact, ok := Target(schemaKey)
	if !ok {
		return
	}
	if sc == nil {
		s.Delete(schemaKey)
		return
	}
	m := &s.prefix
	if exact {
		m = &s.exact
	}
	if *m == nil {
		*m = make(map[string]entry)
	}
	(*m)[pattern] = entry{schemaKey, sc}
}

// Delete removes the schema stored under schemaKey, if any.
func (s *Set) Delete(schemaKey string) {
	pattern, exact, ok := Target(schemaKey)
	if !ok {
		return
	}
	if exact {
		delete(s.exact, pattern)
	} else {
		delete(s.prefix, pattern)
	}
}

// For returns the schema that governs key: the exact-key schema if there is
// one, else the one with the longest prefix governing key ("*" governs
// every key and loses to every other). Keys under ReservedPrefix are never
// governed.
//
// The cost is one map lookup per '/' in key, whatever the number of
// schemas.
func (s *Set) For(key string) (schemaKey string, sc *Schema, ok bool) {
	if IsReserved(key) || (len(s.exact) == 0 && len(s.prefix) == 0) {
		return "", nil, false
	}
	if e, ok := s.exact[key]; ok {
		return e.key, e.sc, true
	}
	if len(s.prefix) == 0 {
		return "", nil, false
	}
	for i := len(key) - 1; i >= 0; i-- {
		if key[i] != '/' {
			continue
		}
		if e, ok := s.prefix[key[:i+1]]; ok {
			return e.key, e.sc, true
		}
	}
	if e, ok := s.prefix[""]; ok {
		return e.key, e.sc, true
	}
	return "", nil, false
}

// Len returns the number of schemas in the set.
func (s *Set) Len() int { return len(s.exact) + len(s.prefix) }

// Clone returns an independent copy, for instance to overlay the schema
// changes of a change set before validating its other entries. Schemas are
// immutable, so both sets use the same ones; only the index maps are
// copied. Cloning a nil *Set gives an empty Set.
func (s *Set) Clone() *Set {
	if s == nil {
		return &Set{}
	}
	return &Set{exact: maps.Clone(s.exact), prefix: maps.Clone(s.prefix)}
}
