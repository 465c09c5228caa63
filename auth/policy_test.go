package auth

import (
	"errors"
	"strings"
	"testing"

	"github.com/confgate/confgate/internal/keyspace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const testACL = `
rules:
  - principals: [spiffe://prod/ns/payments/sa/api]
    read: [payments/]
    write: [payments/db/]
  - principal_prefixes: [spiffe://prod/ns/billing/]
    read: [billing/, shared/]
  - groups: [admins]
    read: [""]
    write: [""]
  - groups: [auditors]
    read: [payments/audit/, payments/]  # overlapping grants
  - anonymous: true
    read: [public/]
  - authenticated: true
    read: [shared/motd]
  - principals: [unicode]
    read: ["a/é", "b/"]
  - principals: [nofolder]
    read: [payments]
`

func mustPolicy(t testing.TB, s string) *Policy {
	t.Helper()
	p, err := ParsePolicy([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func sel(t testing.TB, ps ...string) keyspace.Selector {
	t.Helper()
	s, err := keyspace.NewSelector(ps)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func named(name string, groups ...string) Principal {
	return Principal{Name: name, Groups: normGroups(groups), Method: MethodToken}
}

func TestCanRead(t *testing.T) {
	pol := mustPolicy(t, testACL)
	api := named("spiffe://prod/ns/payments/sa/api")
	for _, tc := range []struct {
		name   string
		p      Principal
		sel    []string
		denied string // the refused prefix, "-" when allowed
	}{
		{"exact grant", api, []string{"payments/"}, "-"},
		{"narrower than grant", api, []string{"payments/db/"}, "-"},
		{"narrower, mid-segment", api, []string{"payments/d"}, "-"},
		{"a key as prefix", api, []string{"payments/db/timeout"}, "-"},
		{"string prefix of the grant is not within it", api, []string{"pay"}, "pay"},
		{"grant without its slash", api, []string{"payments"}, "payments"},
		{"sibling", api, []string{"paypal/"}, "paypal/"},
		{"empty selector needs the empty grant", api, nil, ""},
		{"explicit empty prefix", api, []string{""}, ""},
		{"first offending prefix in key order", api, []string{"zeta/", "payments/x", "alpha/"}, "alpha/"},
		{"every prefix must be covered", api, []string{"payments/a", "payroll/"}, "payroll/"},
		{"name prefix rule", named("spiffe://prod/ns/billing/sa/x"), []string{"billing/", "shared/a"}, "-"},
		{"name prefix is a byte prefix", named("spiffe://prod/ns/billing-evil/sa/x"), []string{"billing/"}, "billing/"},
		{"name prefix itself", named("spiffe://prod/ns/billing/"), []string{"billing/"}, "-"},
		{"exact name only", named("spiffe://prod/ns/payments/sa/api2"), []string{"payments/"}, "payments/"},
		{"group grants everything", named("alice", "admins"), nil, "-"},
		{"group unknown", named("alice", "admin"), []string{"x"}, "x"},
		{"overlapping grants", named("bob", "auditors"), []string{"payments/audit/log", "payments/x"}, "-"},
		{"union of rules", named("spiffe://prod/ns/payments/sa/api", "auditors"), []string{"payments/"}, "-"},
		{"authenticated rule", named("carol"), []string{"shared/motd"}, "-"},
		{"authenticated rule is a key prefix", named("carol"), []string{"shared/motd2"}, "-"},
		{"authenticated rule, not above it", named("carol"), []string{"shared/"}, "shared/"},
		{"anonymous", Anonymous(), []string{"public/x"}, "-"},
		{"anonymous is not authenticated", Anonymous(), []string{"shared/motd"}, "shared/motd"},
		{"authenticated is not anonymous", named("carol"), []string{"public/"}, "public/"},
		{"unicode grant", named("unicode"), []string{"a/é/x"}, "-"},
		{"unicode: e is not é", named("unicode"), []string{"a/e"}, "a/e"},
		{"unicode: shorter than grant", named("unicode"), []string{"a/"}, "a/"},
		{"grant without slash covers more", named("nofolder"), []string{"payments-archive/"}, "-"},
		{"nobody", named("mallory"), []string{"public/"}, "public/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := pol.CanRead(tc.p, sel(t, tc.sel...))
			if tc.denied == "-" {
				if err != nil {
					t.Fatalf("denied: %v", err)
				}
				return
			}
			var de *DeniedError
			if !errors.As(err, &de) {
				t.Fatalf("got %v, want a DeniedError", err)
			}
			if de.Prefix != tc.denied || de.IsKey || de.Op != OpRead {
				t.Fatalf("refused %q (key %v, op %s), want prefix %q", de.Prefix, de.IsKey, de.Op, tc.denied)
			}
			if status.Code(err) != codes.PermissionDenied {
				t.Fatalf("code %v", status.Code(err))
			}
		})
	}
}

func TestCanReadKeyAndWrite(t *testing.T) {
	pol := mustPolicy(t, testACL)
	api := named("spiffe://prod/ns/payments/sa/api")
	for _, tc := range []struct {
		key  string
		read bool
	}{
		{"payments/db/timeout", true},
		{"payments", false},
		{"paymentsx", false},
		{"payments/\u00e9", true},
		{"payment", false},
		{"paypal/x", false},
	} {
		err := pol.CanReadKey(api, tc.key)
		if (err == nil) != tc.read {
			t.Errorf("CanReadKey(%q) = %v, want allowed %v", tc.key, err, tc.read)
		}
	}
	for _, tc := range []struct {
		keys   []string
		denied string // "-" allowed
	}{
		{nil, "-"},
		{[]string{"payments/db/timeout", "payments/db/pool"}, "-"},
		{[]string{"payments/db/timeout", "payments/api/x", "zzz"}, "payments/api/x"},
		{[]string{"payments/db"}, "payments/db"},
		{[]string{"payments/db/"}, "-"},
	} {
		err := pol.CanWrite(api, tc.keys)
		if tc.denied == "-" {
			if err != nil {
				t.Errorf("CanWrite(%q) = %v", tc.keys, err)
			}
			continue
		}
		var de *DeniedError
		if !errors.As(err, &de) || de.Prefix != tc.denied || !de.IsKey || de.Op != OpWrite {
			t.Errorf("CanWrite(%q) = %v, want %q refused", tc.keys, err, tc.denied)
		}
	}
	// read does not imply write, write does not imply read
	if err := pol.CanWrite(named("bob", "auditors"), []string{"payments/x"}); err == nil {
		t.Error("read grant allowed a write")
	}
	only := mustPolicy(t, "rules:\n- principals: [w]\n  write: [x/]\n")
	if err := only.CanReadKey(named("w"), "x/y"); err == nil {
		t.Error("write grant allowed a read")
	}
	if err := pol.CanWrite(named("alice", "admins"), []string{"anything", "at/all"}); err != nil {
		t.Error(err)
	}
}

func TestNilPolicyAllowsAll(t *testing.T) {
	var pol *Policy
	if err := pol.CanRead(Anonymous(), keyspace.Selector{}); err != nil {
		t.Fatal(err)
	}
	if err := pol.CanWrite(Anonymous(), []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if err := pol.CanReadKey(Anonymous(), "a"); err != nil {
		t.Fatal(err)
	}
	if pol.ReadPrefixes(Anonymous()) != nil || pol.Version() != "" {
		t.Fatal("nil policy")
	}
}

func TestDenyAll(t *testing.T) {
	pol := mustPolicy(t, "rules: []\n")
	if err := pol.CanRead(named("x", "admins"), sel(t, "a")); err == nil {
		t.Fatal("empty rules allowed a read")
	}
	if err := pol.CanRead(Anonymous(), keyspace.Selector{}); err == nil {
		t.Fatal("empty rules allowed everything")
	}
}

func TestReadPrefixes(t *testing.T) {
	pol := mustPolicy(t, testACL)
	got := pol.ReadPrefixes(named("bob", "auditors"))
	if strings.Join(got, ",") != "payments/,shared/motd" {
		t.Fatalf("got %q", got)
	}
	if got := pol.ReadPrefixes(named("root", "admins")); len(got) != 1 || got[0] != "" {
		t.Fatalf("got %q", got)
	}
}

func TestParsePolicyErrors(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"empty", "", "empty"},
		{"blank", "  \n# only a comment\n", "empty"},
		{"no rules", "foo: 1\n", "field foo not found"},
		{"rules missing", "{}\n", `no "rules"`},
		{"unknown rule field", "rules:\n- principals: [a]\n  raed: [x/]\n", "raed"},
		{"no subject", "rules:\n- read: [x/]\n", "no subject"},
		{"no grant", "rules:\n- principals: [a]\n", "grants nothing"},
		{"scalar instead of list", "rules:\n- principals: a\n  read: [x/]\n", "cannot unmarshal"},
		{"bad prefix", "rules:\n- principals: [a]\n  read: [/x]\n", "leading slash"},
		{"control char in prefix", "rules:\n- principals: [a]\n  read: [\"x\\u0007\"]\n", "control character"},
		{"invisible in prefix", "rules:\n- principals: [a]\n  read: [\"pay\\u200bments/\"]\n", "invisible"},
		{"empty principal", "rules:\n- principals: [\"\"]\n  read: [x/]\n", "principal is empty"},
		{"empty principal prefix", "rules:\n- principal_prefixes: [\"\"]\n  read: [x/]\n", "authenticated: true"},
		{"two documents", "rules: []\n---\nrules: []\n", "more than one"},
		{"duplicate key", "rules: []\nrules: []\n", "already defined"},
		{"not yaml", "rules: [\n", "ACL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePolicy([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestDeniedErrorMessage(t *testing.T) {
	pol := mustPolicy(t, testACL)
	err := pol.CanRead(named("evil\x1b[31m"), sel(t, "pay"))
	msg := err.Error()
	for _, want := range []string{`"evil\x1b[31m"`, `selector prefix "pay"`, "read"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	if err := pol.CanRead(named("x"), keyspace.Selector{}); !strings.Contains(err.Error(), "every key") {
		t.Errorf("got %v", err)
	}
}
