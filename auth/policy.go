package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/confgate/confgate/internal/keyspace"
	"go.yaml.in/yaml/v3"
)

// The ACL file (YAML). Each rule names who it applies to and what they get:
//
//	rules:
//	  - principals: [spiffe://prod/ns/payments/sa/api]  # exact names
//	    principal_prefixes: [spiffe://prod/ns/payments/] # any name starting so
//	    groups: [payments-admins]                        # members of a group
//	    read: [payments/, shared/]                       # key prefixes
//	    write: [payments/]
//	  - anonymous: true      # callers without credentials
//	    read: [public/]
//	  - authenticated: true  # every caller with a credential
//	    read: [shared/]
//
// A rule applies to a principal if any of its subjects matches: an exact
// name in principals, a name starting with one of principal_prefixes
// (plain byte prefixes, no wildcards: "spiffe://prod/ns/payments/" matches
// every SPIFFE ID under that path, "spiffe://prod/ns/pay" also matches
// "spiffe://prod/ns/payroll/..."; end a prefix with "/" to mean a path),
// a group the principal belongs to, anonymous (the anonymous principal)
// or authenticated (any principal that is not anonymous). A principal's
// grants are the union of the grants of every rule that applies.
//
// Grants are key prefixes, matched byte by byte like selector prefixes:
// "payments/" covers payments/db/timeout, "payments" also covers
// payments-archive/x; "" covers every key. A selector prefix P is allowed
// when some grant G is a prefix of P (so a selector may be narrower than a
// grant, never wider: "pay" is refused under the grant "payments/", since
// it would also select paypal/...). The empty selector (every key) needs
// the grant "". read and write are separate: write does not imply read.
//
// Once a policy is set, whatever no rule grants is denied. Unknown fields,
// duplicate keys, a rule without a subject or without a grant, invalid
// prefixes and names are errors: a typo must not silently grant or deny.
// An empty file is an error too (a file caught mid-write must not deny
// everyone); "rules: []" denies everything.

// Policy is a loaded ACL. It is immutable and safe for concurrent use. A
// nil *Policy allows everything (no ACL configured).
type Policy struct {
	rules         []rule
	byName        map[string][]int // exact principal name -> rule indexes
	byGroup       map[string][]int
	namePrefixes  []namePrefix
	anonymous     []int
	authenticated []int
	version       string
}

type rule struct {
	read, write grantSet
}

type namePrefix struct {
	prefix string
	rule   int
}

// policyFile is the YAML form.
type policyFile struct {
	Rules *[]ruleFile `yaml:"rules"`
}

type ruleFile struct {
	Principals        []string `yaml:"principals"`
	PrincipalPrefixes []string `yaml:"principal_prefixes"`
	Groups            []string `yaml:"groups"`
	Anonymous         bool     `yaml:"anonymous"`
	Authenticated     bool     `yaml:"authenticated"`
	Read              []string `yaml:"read"`
	Write             []string `yaml:"write"`
}

// ParsePolicy parses an ACL file's content.
func ParsePolicy(b []byte) (*Policy, error) {
	errEmpty := errors.New(`ACL: the file is empty (write "rules: []" to deny everything)`)
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errEmpty
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f policyFile
	if err := dec.Decode(&f); errors.Is(err, io.EOF) {
		return nil, errEmpty
	} else if err != nil {
		return nil, fmt.Errorf("ACL: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("ACL: more than one YAML document in the file")
	}
	if f.Rules == nil {
		return nil, errors.New(`ACL: no "rules" list (write "rules: []" to deny everything)`)
	}
	sum := sha256.Sum256(b)
	p := &Policy{
		byName:  make(map[string][]int),
		byGroup: make(map[string][]int),
		version: hex.EncodeToString(sum[:8]),
	}
	for i, rf := range *f.Rules {
		where := fmt.Sprintf("ACL rule %d", i+1)
		if len(rf.Principals)+len(rf.PrincipalPrefixes)+len(rf.Groups) == 0 && !rf.Anonymous && !rf.Authenticated {
			return nil, fmt.Errorf("%s: no subject: give principals, principal_prefixes, groups, anonymous or authenticated", where)
		}
		if len(rf.Read)+len(rf.Write) == 0 {
			return nil, fmt.Errorf("%s: grants nothing: give read or write prefixes", where)
		}
		var r rule
		var err error
		if r.read, err = newGrantSet(rf.Read); err != nil {
			return nil, fmt.Errorf("%s: read: %w", where, err)
		}
		if r.write, err = newGrantSet(rf.Write); err != nil {
			return nil, fmt.Errorf("%s: write: %w", where, err)
		}
		idx := len(p.rules)
		p.rules = append(p.rules, r)
		for _, n := range rf.Principals {
			if err := validName("principal", n); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			p.byName[n] = appendOnce(p.byName[n], idx)
		}
		for _, n := range rf.PrincipalPrefixes {
			if err := validName("principal prefix", n); err != nil {
				return nil, fmt.Errorf("%s: %w (use authenticated: true for every principal)", where, err)
			}
			p.namePrefixes = append(p.namePrefixes, namePrefix{prefix: n, rule: idx})
		}
		for _, g := range rf.Groups {
			if err := validName("group", g); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			p.byGroup[g] = appendOnce(p.byGroup[g], idx)
		}
		if rf.Anonymous {
			p.anonymous = append(p.anonymous, idx)
		}
		if rf.Authenticated {
			p.authenticated = append(p.authenticated, idx)
		}
	}
	return p, nil
}

func appendOnce(s []int, i int) []int {
	if len(s) > 0 && s[len(s)-1] == i {
		return s
	}
	return append(s, i)
}

// Version identifies the policy's content (a hash of the file), for logs
// and metrics. "" for the nil (allow-all) policy.
func (p *Policy) Version() string {
	if p == nil {
		return ""
	}
	return p.version
}

// rulesFor calls f with every rule that applies to pr (a rule may come
// more than once).
func (p *Policy) rulesFor(pr Principal, f func(*rule)) {
	if pr.IsAnonymous() {
		for _, i := range p.anonymous {
			f(&p.rules[i])
		}
		return
	}
	for _, i := range p.authenticated {
		f(&p.rules[i])
	}
	for _, i := range p.byName[pr.Name] {
		f(&p.rules[i])
	}
	for _, np := range p.namePrefixes {
		if strings.HasPrefix(pr.Name, np.prefix) {
			f(&p.rules[np.rule])
		}
	}
	for _, g := range pr.Groups {
		for _, i := range p.byGroup[g] {
			f(&p.rules[i])
		}
	}
}

// covers reports whether a grant of op covers prefix (a selector prefix or
// a key) for pr.
func (p *Policy) covers(pr Principal, op Op, prefix string) bool {
	ok := false
	p.rulesFor(pr, func(r *rule) {
		if !ok {
			g := &r.read
			if op == OpWrite {
				g = &r.write
			}
			ok = g.covers(prefix)
		}
	})
	return ok
}

// CanRead reports whether pr may subscribe to sel: every prefix of sel
// must lie within one of pr's read grants (the empty selector, every key,
// needs the grant ""). The error is a *DeniedError naming the first
// refused prefix in key order. Cheap enough to call for every open stream
// when the policy changes: no allocation beyond the selector's prefixes.
func (p *Policy) CanRead(pr Principal, sel keyspace.Selector) error {
	if p == nil {
		return nil
	}
	if sel.All() {
		if !p.covers(pr, OpRead, "") {
			return &DeniedError{Principal: pr, Op: OpRead, Prefix: ""}
		}
		return nil
	}
	for _, pfx := range sel.Prefixes() {
		if !p.covers(pr, OpRead, pfx) {
			return &DeniedError{Principal: pr, Op: OpRead, Prefix: pfx}
		}
	}
	return nil
}

// CanReadKey reports whether pr may read key (a *DeniedError if not).
func (p *Policy) CanReadKey(pr Principal, key string) error {
	if p == nil || p.covers(pr, OpRead, key) {
		return nil
	}
	return &DeniedError{Principal: pr, Op: OpRead, Prefix: key, IsKey: true}
}

// CanWrite reports whether pr may write (put or delete) every one of keys:
// all or nothing. The error is a *DeniedError naming the first refused key
// in the order given.
func (p *Policy) CanWrite(pr Principal, keys []string) error {
	if p == nil {
		return nil
	}
	for _, k := range keys {
		if !p.covers(pr, OpWrite, k) {
			return &DeniedError{Principal: pr, Op: OpWrite, Prefix: k, IsKey: true}
		}
	}
	return nil
}

// ReadPrefixes lists pr's read grants, normalized (sorted, none covered
// by another): what pr may subscribe to, e.g. for a "permission denied"
// hint or a default selector. nil with the nil policy means everything;
// [""] is everything too.
func (p *Policy) ReadPrefixes(pr Principal) []string {
	if p == nil {
		return nil
	}
	var all []string
	p.rulesFor(pr, func(r *rule) { all = append(all, r.read.prefixes...) })
	return normPrefixes(all)
}

// grantSet is a set of key prefixes, normalized like keyspace.Selector:
// sorted, without duplicates and without prefixes another one covers.
type grantSet struct {
	prefixes []string
}

func newGrantSet(ps []string) (grantSet, error) {
	for _, pfx := range ps {
		if err := keyspace.ValidatePrefix(pfx); err != nil {
			return grantSet{}, err
		}
	}
	return grantSet{prefixes: normPrefixes(ps)}, nil
}

func normPrefixes(ps []string) []string {
	if len(ps) == 0 {
		return nil
	}
	ps = slices.Clone(ps)
	slices.Sort(ps)
	out := ps[:0]
	for _, pfx := range ps {
		// Sorted order puts a covering prefix right before what it covers.
		if len(out) > 0 && strings.HasPrefix(pfx, out[len(out)-1]) {
			continue
		}
		out = append(out, pfx)
	}
	return out
}

// covers reports whether some grant is a prefix of s. The prefixes form an
// antichain under "is a prefix of", so the only candidate is the greatest
// one <= s: any grant G that is a prefix of s is <= s, and a grant between
// G and s would have to have G as a prefix too.
func (g *grantSet) covers(s string) bool {
	i, found := slices.BinarySearch(g.prefixes, s)
	if found {
		return true
	}
	return i > 0 && strings.HasPrefix(s, g.prefixes[i-1])
}
