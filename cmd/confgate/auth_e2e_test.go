package main

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Against a real gateway (dev) with --auth-tokens and --acl: a write
// without a token is UNAUTHENTICATED, naming the credentials the gateway
// accepts; with the token it goes through; a read outside the token's
// grants is PERMISSION_DENIED, for unary calls and watch alike.
func TestAuthEndToEnd(t *testing.T) {
	t.Parallel()
	f := newAuthFiles(t)
	_, c := startDev(t, "--no-seed", "--auth-tokens", f.tokens, "--acl", f.acl)
	tokFile := filepath.Join(f.dir, "client-token")
	writeFile(t, tokFile, f.token+"\n")

	r := c.run("put", "team-a/x", "1")
	t.Logf("put without a token: exit %d: %s", r.code, r.stderr)
	if r.code != exitFailure || !strings.Contains(r.stderr, "unauthenticated") || !strings.Contains(r.stderr, "bearer token") || !strings.Contains(r.stderr, "no token was sent") {
		t.Fatalf("put without a token: exit %d, stderr %q; want 2, unauthenticated, the credentials accepted", r.code, r.stderr)
	}
	r = c.run("put", "team-a/x", "1", "--token", "cgt_"+strings.Repeat("w", 43))
	if r.code != exitFailure || !strings.Contains(r.stderr, "unauthenticated") || !strings.Contains(r.stderr, "refused the token given") {
		t.Fatalf("put with an unknown token: exit %d, stderr %q", r.code, r.stderr)
	}
	putCursor(t, c, "team-a/x", "1", "--token-file", tokFile)
	if out := c.ok("get", "team-a/x", "--token-file", tokFile); !strings.Contains(out, "1") {
		t.Errorf("get with the token: %q", out)
	}
	r = c.run("get", "payments/db/timeout", "--token-file", tokFile)
	t.Logf("get outside the grants: exit %d: %s", r.code, r.stderr)
	if r.code != exitFailure || !strings.Contains(r.stderr, "permission denied") || !strings.Contains(r.stderr, "team-a") {
		t.Fatalf("get outside the grants: exit %d, stderr %q; want 2 and permission denied naming team-a", r.code, r.stderr)
	}
	r = c.run("put", "shared/x", "1", "--token-file", tokFile)
	if r.code != exitFailure || !strings.Contains(r.stderr, "permission denied") {
		t.Fatalf("put where only reads are granted: exit %d, stderr %q", r.code, r.stderr)
	}
	r = c.run("watch", "payments/", "--token-file", tokFile, "--duration", "10s")
	if r.code != exitFailure || !strings.Contains(r.stderr, "permission denied") {
		t.Fatalf("watch outside the grants: exit %d, stderr %q", r.code, r.stderr)
	}
}

// SIGHUP to serve with auth files re-reads them at once and logs it; the
// gateway keeps serving with the new ACL.
func TestSIGHUPReloadsAuth(t *testing.T) {
	bin := buildBinary(t)
	f := newAuthFiles(t)
	kafka := freeAddr(t)
	_, port, _ := net.SplitHostPort(kafka)
	startProc(t, "is ready", bin, "dev", "--listen", freeAddr(t), "--admin-listen", "", "--kafka-port", port)
	addr := freeAddr(t)
	p := startProc(t, "gateway ready", bin, "serve", "--brokers", kafka, "--topic", "confgate.config",
		"--listen", addr, "--admin-listen", "", "--fetch-max-wait", "100ms", "--auth-tokens", f.tokens, "--acl", f.acl)
	c := cli{t: t, addr: addr}
	logged := func(line string, n int) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(p.out.String(), line) < n {
			if time.Now().After(deadline) {
				t.Fatalf("want %q logged %d times:\n%s", line, n, p.out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	p.signal(t, syscall.SIGHUP)
	logged("SIGHUP: reloaded, still serving", 1)

	// A broken ACL: SIGHUP says so, the previous ACL stays in force.
	writeFile(t, f.acl, "rules: [\n")
	p.signal(t, syscall.SIGHUP)
	logged("SIGHUP: reload failed", 1)
	c.ok("put", "team-a/x", "1", "--token", f.token)
	if r := c.run("put", "shared/x", "1", "--token", f.token); r.code != exitFailure || !strings.Contains(r.stderr, "permission denied") {
		t.Fatalf("put outside the old ACL: exit %d, stderr %q", r.code, r.stderr)
	}

	// A good one: in force after SIGHUP.
	writeFile(t, f.acl, "rules:\n  - principals: [team-a]\n    write: [team-a/, shared/]\n")
	p.signal(t, syscall.SIGHUP)
	logged("SIGHUP: reloaded, still serving", 2)
	c.ok("put", "shared/x", "1", "--token", f.token)

	p.signal(t, syscall.SIGTERM)
	if err := p.exited(t); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, p.out)
	}
}
