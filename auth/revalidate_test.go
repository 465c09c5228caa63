package auth

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
)

// Revalidate follows the tokens file: a token still in it is valid, one
// removed (or now naming someone else) is not; other principals are never
// refused by it.
func TestRevalidate(t *testing.T) {
	dir := t.TempDir()
	tf := filepath.Join(dir, "tokens")
	tokA, lineA, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	tokB, lineB, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	mtime := time.Unix(1_700_000_000, 0)
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(tf, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		mtime = mtime.Add(time.Minute)
		if err := os.Chtimes(tf, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	write(lineA + " alice\n" + lineB + " bob\n")
	now := time.Unix(1_800_000_000, 0)
	a, err := NewAuthenticator(Config{TokensFile: tf, PollInterval: time.Second, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	as := func(tok string) Principal {
		t.Helper()
		p, err := a.Authenticate(metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tok)))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	alice, bob := as(tokA), as(tokB)
	if err := a.Revalidate(alice); err != nil {
		t.Fatalf("alice before revocation: %v", err)
	}

	write(strings.Replace(lineB+" bob\n", " bob", " bob ops", 1)) // alice removed, bob gains a group
	now = now.Add(2 * time.Second)                                // past the poll interval
	if err := a.Revalidate(alice); err == nil || !strings.Contains(err.Error(), "revoked") {
		t.Errorf("alice after revocation: %v, want revoked", err)
	}
	if err := a.Revalidate(bob); err == nil || !strings.Contains(err.Error(), "other groups") {
		t.Errorf("bob with new groups: %v, want refused (reconnect)", err)
	}
	if err := a.Revalidate(as(tokB)); err != nil {
		t.Errorf("bob reconnected: %v", err)
	}
	for _, p := range []Principal{Anonymous(), {Name: "spiffe://x", Method: MethodCertificate}, {Name: "svc", Method: MethodJWT}} {
		if err := a.Revalidate(p); err != nil {
			t.Errorf("Revalidate(%v) = %v, want nil", p, err)
		}
	}
}
