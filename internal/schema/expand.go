package schema

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// maxExpandedSize bounds the work one validation can do at one place in
// the value: the number of subschemas of an embedded JSON Schema counted
// as if every "$ref" were a copy of its target. The library validates a
// "$ref" by validating its target again, so a few hundred bytes of
// definitions that each refer twice to the next one cost 2^levels
// subschemas per value (1.4 s at 20 levels, doubling per level), and the
// library cannot be interrupted. It costs about 1 µs per subschema; the
// largest real schemas we measured (the JSON Schema 2020-12 metaschema,
// SchemaStore's GitHub workflow schema) expand to a few thousand.
const maxExpandedSize = 100_000

// maxRecursionPaths and maxRecursionWork bound the check for ambiguous
// recursion (see expander.recurse), whose cost grows with the square of
// the number of paths by which a subschema refers back to itself.
const (
	maxRecursionPaths = 1000
	maxRecursionWork  = 10_000_000
)

// stepKind is how a subschema moves from the part of the value its parent
// checks to the part it checks itself.
type stepKind uint8

const (
	inPlace    stepKind = iota // the same part (allOf, $ref, then, ...)
	propName                   // member .name (properties)
	propRegexp                 // members whose names match re (patternProperties)
	propOther                  // members owner names in neither properties nor patternProperties (additionalProperties)
	propAny                    // any member (unevaluatedProperties, draft-4 dependencies are in place)
	index                      // element n (prefixItems, draft-7 tuple items)
	indexFrom                  // elements from n on (items, additionalItems, contains, unevaluatedItems)
	memberName                 // a member's name (propertyNames)
	content                    // the decoded content of a string (contentSchema)
)

type step struct {
	kind  stepKind
	name  string
	re    jsonschema.Regexp
	owner *jsonschema.Schema
	n     int
}

// overlap reports whether one part of a value can be reached by both a
// and b.
func overlap(a, b step) bool {
	if a.kind > b.kind {
		a, b = b, a
	}
	switch a.kind {
	case propName:
		switch b.kind {
		case propName:
			return a.name == b.name
		case propRegexp:
			return b.re.MatchString(a.name)
		case propOther:
			return !named(b.owner, a.name)
		case propAny:
			return true
		}
		return false
	case propRegexp, propOther, propAny:
		return b.kind == propRegexp || b.kind == propOther || b.kind == propAny
	case index:
		switch b.kind {
		case index:
			return a.n == b.n
		case indexFrom:
			return a.n >= b.n
		}
		return false
	case indexFrom:
		return b.kind == indexFrom
	}
	return a.kind == b.kind
}

// named reports whether additionalProperties of s leaves out member name.
func named(s *jsonschema.Schema, name string) bool {
	if _, ok := s.Properties[name]; ok {
		return true
	}
	for re := range s.PatternProperties {
		if re.MatchString(name) {
			return true
		}
	}
	return false
}

type edge struct {
	step step
	to   *jsonschema.Schema
}

// edges lists the subschemas s applies, "$ref" targets included, in an
// order that does not depend on map iteration, so every gateway reaches
// the same verdict.
func (x *expander) edges(s *jsonschema.Schema) []edge {
	var out []edge
	add := func(st step, to *jsonschema.Schema) {
		if to != nil {
			out = append(out, edge{st, to})
		}
	}
	here := step{kind: inPlace}
	add(here, s.Ref)
	if s.RecursiveRef != nil {
		// $recursiveRef may land on any schema with $recursiveAnchor.
		add(here, s.RecursiveRef)
		for _, t := range x.recursiveAnchors {
			if t != s.RecursiveRef {
				add(here, t)
			}
		}
	}
	if s.DynamicRef != nil {
		// $dynamicRef may land on any schema with the same $dynamicAnchor.
		add(here, s.DynamicRef.Ref)
		if s.DynamicRef.Anchor != "" {
			for _, t := range x.dynamicAnchors[s.DynamicRef.Anchor] {
				if t != s.DynamicRef.Ref {
					add(here, t)
				}
			}
		}
	}
	add(here, s.Not)
	for _, list := range [][]*jsonschema.Schema{s.AllOf, s.AnyOf, s.OneOf} {
		for _, t := range list {
			add(here, t)
		}
	}
	add(here, s.If)
	add(here, s.Then)
	add(here, s.Else)
	for _, k := range slices.Sorted(maps.Keys(s.DependentSchemas)) {
		add(here, s.DependentSchemas[k])
	}
	for _, k := range slices.Sorted(maps.Keys(s.Dependencies)) {
		if t, ok := s.Dependencies[k].(*jsonschema.Schema); ok {
			add(here, t)
		}
	}

	add(step{kind: memberName}, s.PropertyNames)
	for _, k := range slices.Sorted(maps.Keys(s.Properties)) {
		add(step{kind: propName, name: k}, s.Properties[k])
	}
	res := slices.Collect(maps.Keys(s.PatternProperties))
	slices.SortFunc(res, func(a, b jsonschema.Regexp) int {
		switch {
		case a.String() < b.String():
			return -1
		case a.String() > b.String():
			return 1
		}
		return 0
	})
	for _, re := range res {
		add(step{kind: propRegexp, re: re}, s.PatternProperties[re])
	}
	if t, ok := s.AdditionalProperties.(*jsonschema.Schema); ok {
		add(step{kind: propOther, owner: s}, t)
	}
	add(step{kind: propAny}, s.UnevaluatedProperties)

	for i, t := range s.PrefixItems {
		add(step{kind: index, n: i}, t)
	}
	add(step{kind: indexFrom, n: len(s.PrefixItems)}, s.Items2020)
	tuple := 0
	switch items := s.Items.(type) {
	case *jsonschema.Schema:
		add(step{kind: indexFrom}, items)
	case []*jsonschema.Schema:
		for i, t := range items {
			add(step{kind: index, n: i}, t)
		}
		tuple = len(items)
	}
	if t, ok := s.AdditionalItems.(*jsonschema.Schema); ok {
		add(step{kind: indexFrom, n: tuple}, t)
	}
	add(step{kind: indexFrom}, s.Contains)
	add(step{kind: indexFrom}, s.UnevaluatedItems)
	add(step{kind: content}, s.ContentSchema)
	return out
}

// expander counts the expanded size of a compiled schema: each subschema
// counts once per path by which validation reaches it, so a "$ref" counts
// as a copy of its target. A path that comes back to a subschema it is
// already inside (recursion) stops there: the library stops such a cycle
// at the same part of the value, and otherwise recursion follows the
// value, one level per level of the value. Sizes of subschemas whose
// expansion never came back to an enclosing one are memoized; the others
// are counted again on each path, and counting stops as soon as the total
// passes the limit, so the walk itself takes at most about the limit in
// steps.
type expander struct {
	limit            int
	total            int
	memo             map[*jsonschema.Schema]int
	depth            map[*jsonschema.Schema]int // position on the stack of subschemas being expanded
	stack            []step                     // the step into each of them
	recursions       map[*jsonschema.Schema][][]step
	work             int
	dynamicAnchors   map[string][]*jsonschema.Schema
	recursiveAnchors []*jsonschema.Schema
	err              error
}

// checkExpansion refuses a compiled schema whose validation could cost
// more than maxExpandedSize subschemas at one part of a value, or whose
// recursion could cost exponentially many in the depth of the value.
func checkExpansion(root *jsonschema.Schema) error {
	x := &expander{
		limit:          maxExpandedSize,
		memo:           map[*jsonschema.Schema]int{},
		depth:          map[*jsonschema.Schema]int{},
		recursions:     map[*jsonschema.Schema][][]step{},
		dynamicAnchors: map[string][]*jsonschema.Schema{},
	}
	x.collectAnchors(root)
	x.size(root, step{kind: inPlace})
	if x.err == nil {
		x.checkRecursions()
	}
	return x.err
}

// collectAnchors finds the possible targets of $dynamicRef and
// $recursiveRef: every reachable schema that declares an anchor for them.
func (x *expander) collectAnchors(root *jsonschema.Schema) {
	seen := map[*jsonschema.Schema]bool{root: true}
	todo := []*jsonschema.Schema{root}
	for len(todo) > 0 {
		s := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if s.DynamicAnchor != "" {
			x.dynamicAnchors[s.DynamicAnchor] = append(x.dynamicAnchors[s.DynamicAnchor], s)
		}
		if s.RecursiveAnchor {
			x.recursiveAnchors = append(x.recursiveAnchors, s)
		}
		for _, e := range x.edges(s) {
			if !seen[e.to] {
				seen[e.to] = true
				todo = append(todo, e.to)
			}
		}
	}
}

// size returns the expanded size of s, entered by step in, and the lowest
// stack position its expansion came back to (len(stack) if none).
func (x *expander) size(s *jsonschema.Schema, in step) (n, low int) {
	if x.err != nil {
		return 0, 0
	}
	if n, ok := x.memo[s]; ok {
		x.add(n)
		return n, len(x.stack)
	}
	if d, ok := x.depth[s]; ok {
		x.recurse(s, d)
		return 0, d
	}
	x.add(1)
	d := len(x.stack)
	x.depth[s] = d
	x.stack = append(x.stack, in)
	n, low = 1, d+1
	for _, e := range x.edges(s) {
		m, l := x.size(e.to, e.step)
		n, low = n+m, min(low, l)
		if x.err != nil {
			break
		}
	}
	x.stack = x.stack[:d]
	delete(x.depth, s)
	if low >= d {
		x.memo[s] = n
	}
	return n, min(low, d)
}

func (x *expander) add(n int) {
	x.total += n
	if x.total > x.limit && x.err == nil {
		x.err = fmt.Errorf(`field "schema" expands to more than %d subschemas through $ref (each $ref counts as a copy of its target, and validation checks a value against every copy); refer fewer times to large definitions, or split the schema into schemas for narrower prefixes`, x.limit)
	}
}

// recurse records that the expansion came back to s, on the stack at
// position d. If validation could come back to s by two paths at the same
// part of the value (such as {"allOf": [{"items": {"$ref": "#"}},
// {"items": {"$ref": "#"}}]}), each level of the value doubles the work,
// which no limit on the schema bounds, so the schema is refused. Paths
// that come back at the same part of the value are left out: the library
// stops them.
func (x *expander) recurse(s *jsonschema.Schema, d int) {
	var word []step
	for _, st := range x.stack[d+1:] {
		if st.kind != inPlace {
			word = append(word, st)
		}
	}
	if len(word) == 0 {
		return
	}
	if len(x.recursions[s]) >= maxRecursionPaths {
		x.err = fmt.Errorf(`field "schema": subschema %s is referred to recursively by more than %d paths; simplify its recursion`, where(s), maxRecursionPaths)
		return
	}
	x.recursions[s] = append(x.recursions[s], word)
}

// checkRecursions refuses a subschema that validation could come back to
// by two different paths at the same part of a value: two recursive paths
// whose steps can match the same parts of a value, or one matching the
// start of the other where the rest of the longer one can be followed by
// recursing again. Subschemas are checked in the order of their location,
// so every gateway names the same one.
func (x *expander) checkRecursions() {
	schemas := slices.Collect(maps.Keys(x.recursions))
	slices.SortFunc(schemas, func(a, b *jsonschema.Schema) int { return strings.Compare(a.Location, b.Location) })
	for _, s := range schemas {
		words := x.recursions[s]
		for i, w := range words {
			for _, v := range words[i+1:] {
				if len(w) > len(v) {
					w, v = v, w
				}
				x.work += len(w) + len(words)
				if x.work > maxRecursionWork {
					x.err = fmt.Errorf(`field "schema": the recursion of subschema %s is too complex to check; simplify it`, where(s))
					return
				}
				if !prefixOverlap(w, v) {
					continue
				}
				ambiguous := len(w) == len(v)
				for _, u := range words {
					ambiguous = ambiguous || overlap(u[0], v[len(w)])
				}
				if ambiguous {
					x.err = fmt.Errorf(`field "schema": subschema %s refers to itself by two paths that can apply to the same part of a value, so validation would check it repeatedly at each level of the value (exponential work); make recursive references apply to distinct properties or items`, where(s))
					return
				}
			}
		}
	}
}

// prefixOverlap reports whether the shorter of a and b can reach the same
// part of a value as the start of the longer one.
func prefixOverlap(a, b []step) bool {
	for i := range min(len(a), len(b)) {
		if !overlap(a[i], b[i]) {
			return false
		}
	}
	return true
}

// where names subschema s by its JSON pointer in the embedded schema.
func where(s *jsonschema.Schema) string {
	return quote(strings.TrimPrefix(s.Location, docURL))
}
