package auth

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/confgate/confgate/internal/keyspace"
	"go.yaml.in/yaml/v3"
)

// refRule and refAllowed are a plain reference for the policy's decisions,
// written from the documented rules without the indexes and binary
// searches of Policy: a rule applies if any subject matches; a selector
// prefix is allowed if some read grant of an applying rule is a prefix of
// it; the empty selector needs the grant "".
// refRule is the file's own rule form: the reference differs from Policy
// in how it decides, not in how the file reads.
type refRule = ruleFile

func refApplies(r refRule, p Principal) bool {
	if p.Name == "" {
		return r.Anonymous
	}
	if r.Authenticated {
		return true
	}
	for _, n := range r.Principals {
		if n == p.Name {
			return true
		}
	}
	for _, n := range r.PrincipalPrefixes {
		if strings.HasPrefix(p.Name, n) {
			return true
		}
	}
	for _, g := range r.Groups {
		for _, pg := range p.Groups {
			if g == pg {
				return true
			}
		}
	}
	return false
}

func refCovers(rules []refRule, p Principal, write bool, s string) bool {
	for _, r := range rules {
		if !refApplies(r, p) {
			continue
		}
		grants := r.Read
		if write {
			grants = r.Write
		}
		for _, g := range grants {
			if strings.HasPrefix(s, g) {
				return true
			}
		}
	}
	return false
}

// refCanRead returns the first refused prefix in key order, or ok.
func refCanRead(rules []refRule, p Principal, prefixes []string) (refused string, ok bool) {
	if len(prefixes) == 0 {
		return "", refCovers(rules, p, false, "")
	}
	for _, pfx := range prefixes {
		if !refCovers(rules, p, false, pfx) {
			return pfx, false
		}
	}
	return "", true
}

// FuzzParsePolicy: any file parses or fails cleanly; a policy that loads
// answers CanRead, CanReadKey and CanWrite exactly like the reference, for
// a principal and a selector the fuzzer also picks.
func FuzzParsePolicy(f *testing.F) {
	f.Add([]byte(testACL), "spiffe://prod/ns/payments/sa/api", "", "payments/db/,pay")
	f.Add([]byte(testACL), "bob", "auditors", "payments/audit/x,payments/")
	f.Add([]byte(testACL), "", "", "public/a")
	f.Add([]byte(testACL), "x", "admins", "")
	f.Add([]byte("rules: []\n"), "a", "", "")
	f.Add([]byte("rules:\n- principal_prefixes: [a/]\n  read: [\"\", x]\n  write: [y/]\n"), "a/b", "g", "x/y")
	f.Add([]byte("rules:\n- groups: [g, h]\n  read: [a/é, a/e]\n"), "n", "h", "a/é/z,a/e")
	f.Add([]byte("rules:\n- &r {authenticated: true, read: [k/]}\n- *r\n"), "n", "", "k/1")
	f.Fuzz(func(t *testing.T, file []byte, name, groups, selector string) {
		pol, err := ParsePolicy(file)
		if err != nil {
			if pol != nil {
				t.Fatal("a policy and an error")
			}
			return
		}
		var ref struct {
			Rules []refRule `yaml:"rules"`
		}
		if err := yaml.Unmarshal(file, &ref); err != nil {
			t.Fatalf("loaded policy the reference cannot read: %v", err)
		}
		p := Principal{Name: name, Method: MethodToken}
		if name == "" {
			p.Method = MethodAnonymous
		}
		if groups != "" {
			p.Groups = normGroups(strings.Split(groups, ","))
		}
		var prefixes []string
		if selector != "" {
			prefixes = strings.Split(selector, ",")
		}
		sel, err := keyspace.NewSelector(prefixes)
		if err != nil {
			return
		}
		got := pol.CanRead(p, sel)
		refused, ok := refCanRead(ref.Rules, p, sel.Prefixes())
		if (got == nil) != ok {
			t.Fatalf("CanRead(%v, %v) = %v, reference allowed=%v", p, sel, got, ok)
		}
		if got != nil {
			var de *DeniedError
			if !errors.As(got, &de) || de.Prefix != refused || de.IsKey {
				t.Fatalf("CanRead refused %v, reference refused %q", got, refused)
			}
		}
		// Every prefix of the selector, read as a key and as a write.
		for _, pfx := range prefixes {
			if (pol.CanReadKey(p, pfx) == nil) != refCovers(ref.Rules, p, false, pfx) {
				t.Fatalf("CanReadKey(%q) disagrees with the reference", pfx)
			}
		}
		err = pol.CanWrite(p, prefixes)
		wantErr := false
		for _, pfx := range prefixes {
			if !refCovers(ref.Rules, p, true, pfx) {
				var de *DeniedError
				if !errors.As(err, &de) || de.Prefix != pfx || !de.IsKey {
					t.Fatalf("CanWrite = %v, reference refuses %q first", err, pfx)
				}
				wantErr = true
				break
			}
		}
		if !wantErr && err != nil {
			t.Fatalf("CanWrite = %v, reference allows", err)
		}
		// ReadPrefixes is exactly what CanRead allows: each of them alone.
		for _, g := range pol.ReadPrefixes(p) {
			s, err := keyspace.NewSelector([]string{g})
			if err != nil {
				t.Fatalf("grant %q is not a valid prefix: %v", g, err)
			}
			if err := pol.CanRead(p, s); err != nil {
				t.Fatalf("ReadPrefixes lists %q, CanRead refuses it: %v", g, err)
			}
		}
		// Loading is deterministic.
		again, err := ParsePolicy(file)
		if err != nil || again.Version() != pol.Version() {
			t.Fatal("second parse differs")
		}
	})
}

// FuzzParseTokens: any file parses or fails cleanly; when it parses, a
// token is found exactly when a line carries its hash, with that line's
// principal, and no error message repeats a hash.
func FuzzParseTokens(f *testing.F) {
	h := HashToken("token-0123456789abcdef0123456789abcdef")
	f.Add([]byte("# comment\n"+h+" alice admins,ops\n"), "token-0123456789abcdef0123456789abcdef")
	f.Add([]byte(h+"\tbob\n\n  "+HashToken("x")+" carol a\n"), "x")
	f.Add([]byte("sha256:zz bob\n"), "x")
	f.Add([]byte(h+" a\n"+h+" b\n"), "y")
	f.Add([]byte(h+" a b c\n"), "")
	f.Add([]byte("\xff"), "")
	f.Fuzz(func(t *testing.T, file []byte, token string) {
		set, err := parseTokens(file)
		if err != nil {
			if set != nil {
				t.Fatal("a set and an error")
			}
			return
		}
		want := HashToken(token)
		var wantName string
		for _, line := range strings.Split(string(file), "\n") {
			fs := strings.FieldsFunc(line, func(r rune) bool { return r == ' ' || r == '\t' || r == '\r' })
			if len(fs) >= 2 && fs[0] == want {
				wantName = fs[1]
			}
		}
		p, ok := set.lookup(token)
		if ok != (wantName != "") || p.Name != wantName {
			t.Fatalf("lookup = %+v %v, reference %q", p, ok, wantName)
		}
		for _, p := range set.byHash {
			if p.Method != MethodToken || strings.ContainsAny(p.Name, " \t\n") || validName("n", p.Name) != nil {
				t.Fatalf("bad principal %+v", p)
			}
			for _, g := range p.Groups {
				if g == "" || strings.Contains(g, ",") {
					t.Fatalf("bad group %q", g)
				}
			}
		}
	})
}

// FuzzParseJWKS: any file parses or fails cleanly; a loaded set holds only
// complete public signature keys.
func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys": []}`))
	f.Add([]byte(`{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`))
	f.Add([]byte(`{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}`))
	f.Add([]byte(`{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "use": "enc"}]}`))
	f.Add([]byte(`{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "RS256"}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := parseJWKS(b)
		if err != nil {
			return
		}
		for _, k := range set.keys {
			if !k.Valid() || !k.IsPublic() || (k.Use != "" && k.Use != "sig") {
				t.Fatalf("loaded %+v", k)
			}
			if _, err := json.Marshal(k); err != nil {
				t.Fatalf("loaded key does not marshal: %v", err)
			}
		}
	})
}
