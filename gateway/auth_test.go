package gateway_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/confgate/confgate/auth"
	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/internal/testkit"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
)

// authEnv is a tokens file, an ACL file and what auth makes of them.
type authEnv struct {
	t      testing.TB
	dir    string
	tokens map[string]string // principal -> token
	acl    string            // path
	Auth   *auth.Authenticator
	Policy *auth.PolicyWatcher
	issuer *testIssuer // nil without JWTs
	log    *syncBuf
}

const testIssuerName = "https://issuer.test"

// newAuthEnv makes a static token for each principal, writes acl, and,
// with jwts, accepts JWTs from a fresh issuer too.
func newAuthEnv(t testing.TB, acl string, jwts bool, principals ...string) *authEnv {
	t.Helper()
	e := &authEnv{t: t, dir: t.TempDir(), tokens: map[string]string{}, log: &syncBuf{}}
	var lines []string
	for _, p := range principals {
		tok, hash, err := auth.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[p] = tok
		lines = append(lines, hash+" "+p)
	}
	tf := filepath.Join(e.dir, "tokens")
	if err := os.WriteFile(tf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := auth.Config{TokensFile: tf}
	if jwts {
		e.issuer = newTestIssuer(t)
		jf := filepath.Join(e.dir, "jwks.json")
		if err := os.WriteFile(jf, []byte(e.issuer.jwks), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.JWT = auth.JWTConfig{JWKSFile: jf, Issuer: testIssuerName, Audiences: []string{"confgate"}, Leeway: time.Millisecond}
	}
	a, err := auth.NewAuthenticator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.Auth = a
	e.acl = filepath.Join(e.dir, "acl.yaml")
	e.writeACL(acl)
	pw, err := auth.NewPolicyWatcher(auth.PolicyConfig{File: e.acl, PollInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.Policy = pw
	return e
}

var aclSeq int64

// writeACL replaces the ACL file (with a modification time of its own, so
// the change shows on coarse-mtime file systems too).
func (e *authEnv) writeACL(content string) {
	e.t.Helper()
	if err := os.WriteFile(e.acl, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	aclSeq++
	mt := time.Unix(1_600_000_000+aclSeq, 0)
	if err := os.Chtimes(e.acl, mt, mt); err != nil {
		e.t.Fatal(err)
	}
}

// setACL replaces the ACL and puts it in force now (as SIGHUP would),
// rather than at the watcher's next poll.
func (e *authEnv) setACL(content string) {
	e.t.Helper()
	e.writeACL(content)
	if err := e.Policy.Reload(); err != nil {
		e.t.Fatal(err)
	}
}

// start runs a gateway with e's authenticator and policy.
func (e *authEnv) start(k *testkit.Kafka, topic string, o testkit.Options) *testkit.Gateway {
	e.t.Helper()
	o.Gateway.Authenticator, o.Gateway.Policy = e.Auth, e.Policy
	if o.Gateway.Name == "" {
		o.Gateway.Name = "gw-test"
	}
	o.Gateway.Logger = slog.New(slog.NewTextHandler(e.log, nil))
	return testkit.StartGateway(e.t, k, topic, o)
}

// bearer is per-RPC credentials over plaintext, for tests.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

// as is g seen by a client presenting token (none when ""), on a
// connection of its own; opts adds dial options.
func as(t testing.TB, g *testkit.Gateway, token string, opts ...grpc.DialOption) *testkit.Gateway {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
	}
	conn, err := grpc.NewClient(g.Addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := *g
	c.Conn, c.Client = conn, confgatev1.NewConfigServiceClient(conn)
	return &c
}

func (e *authEnv) as(g *testkit.Gateway, principal string) *testkit.Gateway {
	e.t.Helper()
	tok, ok := e.tokens[principal]
	if !ok {
		e.t.Fatalf("no token for %s", principal)
	}
	return as(e.t, g, tok)
}

// syncBuf is a log sink tests read while the gateway writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// lines are the log lines containing every one of subs.
func (s *syncBuf) lines(subs ...string) []string {
	var out []string
	for _, l := range strings.Split(s.String(), "\n") {
		ok := true
		for _, sub := range subs {
			ok = ok && strings.Contains(l, sub)
		}
		if ok && l != "" {
			out = append(out, l)
		}
	}
	return out
}

type testIssuer struct {
	key  *ecdsa.PrivateKey
	jwks string
}

func newTestIssuer(t testing.TB) *testIssuer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: string(jose.ES256), Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return &testIssuer{key: k, jwks: string(b)}
}

// token is a JWT for sub that expires at exp.
func (is *testIssuer) token(t testing.TB, sub string, exp time.Time) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: is.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := jwt.Signed(s).Claims(map[string]any{
		"iss": testIssuerName, "aud": "confgate", "sub": sub,
		"exp": exp.Unix(), "iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(),
	}).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func wantCode(t testing.TB, what string, err error, code codes.Code, substr string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), substr) {
		t.Errorf("%s: %v, want %v containing %q", what, err, code, substr)
	}
}

// firstRecv opens a Subscribe stream as c and returns its first message
// or error.
func firstRecv(c confgatev1.ConfigServiceClient, prefixes ...string) (*confgatev1.SubscribeResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.Subscribe(ctx, &confgatev1.SubscribeRequest{Selector: &confgatev1.Selector{Prefixes: prefixes}})
	if err != nil {
		return nil, err
	}
	return st.Recv()
}

// snapshotErr reads a GetSnapshot stream as c to its end.
func snapshotErr(c confgatev1.ConfigServiceClient, prefixes ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := c.GetSnapshot(ctx, &confgatev1.GetSnapshotRequest{Selector: &confgatev1.Selector{Prefixes: prefixes}})
	if err != nil {
		return err
	}
	for {
		m, err := st.Recv()
		if err != nil {
			return err
		}
		if m.GetEnd() != nil {
			return nil
		}
	}
}

func bg() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 15*time.Second)
}

// Every RPC but health needs a credential once one is configured; a bad
// one is refused, never taken for anonymous. Reflection needs one too.
func TestAuthUnauthenticated(t *testing.T) {
	k := testkit.StartKafka(t)
	e := newAuthEnv(t, "rules:\n  - principals: [alice]\n    read: ['']\n    write: ['']\n", false, "alice")
	g := e.start(k, testkit.Topic(t), testkit.Options{})
	testkit.Put(t, e.as(g, "alice"), "x/a", "1")

	stranger, _, _ := auth.NewToken() // a well-formed token the file does not list
	for _, tc := range []struct {
		name, token, reason, msg string
	}{
		{"no credential", "", "no_credential", "no credential presented"},
		{"unknown token", stranger, "invalid_credential", "unknown or revoked static token"},
		{"short token", "short", "invalid_credential", "shorter than"},
	} {
		c := as(t, g, tc.token).Client
		before := testkit.Metric(t, g, "confgate_gateway_auth_failures_total", tc.reason)
		ctx, cancel := bg()
		_, err := c.Get(ctx, &confgatev1.GetRequest{Key: "x/a"})
		wantCode(t, tc.name+": Get", err, codes.Unauthenticated, tc.msg)
		_, err = c.Put(ctx, &confgatev1.PutRequest{Key: "x/b", Value: []byte("v")})
		wantCode(t, tc.name+": Put", err, codes.Unauthenticated, tc.msg)
		_, err = c.Delete(ctx, &confgatev1.DeleteRequest{Key: "x/a"})
		wantCode(t, tc.name+": Delete", err, codes.Unauthenticated, tc.msg)
		_, err = firstRecv(c)
		wantCode(t, tc.name+": Subscribe", err, codes.Unauthenticated, tc.msg)
		wantCode(t, tc.name+": GetSnapshot", snapshotErr(c), codes.Unauthenticated, tc.msg)
		cancel()
		if n := testkit.Metric(t, g, "confgate_gateway_auth_failures_total", tc.reason) - before; n != 5 {
			t.Errorf("%s: auth_failures{%s} went up by %v, want 5", tc.name, tc.reason, n)
		}
		// Health answers without credentials (SERVING once the status
		// refresh saw the store ready); reflection does not.
		ctx, cancel = bg()
		h, err := healthpb.NewHealthClient(as(t, g, tc.token).Conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil || h.Status == healthpb.HealthCheckResponse_UNKNOWN {
			t.Errorf("%s: health: %v %v", tc.name, h, err)
		}
		rs, err := reflectionpb.NewServerReflectionClient(as(t, g, tc.token).Conn).ServerReflectionInfo(ctx)
		if err == nil {
			_, err = rs.Recv()
		}
		wantCode(t, tc.name+": reflection", err, codes.Unauthenticated, tc.msg)
		cancel()
	}
	if view, _, _ := testkit.Snapshot(t, e.as(g, "alice")); len(view) != 1 {
		t.Errorf("refused calls wrote: %v", testkit.SortedKeys(view))
	}
	ctx, cancel := bg()
	defer cancel()
	rs, err := reflectionpb.NewServerReflectionClient(e.as(g, "alice").Conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := rs.Recv(); err != nil {
		t.Errorf("reflection with a credential: %v", err)
	}
	if l := e.log.lines("component=audit", "result=Unauthenticated"); len(l) == 0 {
		t.Error("no audit line for refused callers")
	}
	for _, tok := range []string{stranger, e.tokens["alice"]} {
		if strings.Contains(e.log.String(), tok) {
			t.Error("a token is in the log")
		}
	}
}

const edgesACL = `rules:
  - principals: [alice]
    read: [payments/, shared/]
    write: [payments/]
  - authenticated: true
    read: [public/]
  - principals: [root]
    read: ['']
  - principals: [dave]
    read: [pay]
    write: [pay]
`

// Each RPC allowed and refused at the edges: the empty selector, "pay" vs
// "payments/" (string prefixes), a selector narrower than a grant, a
// selector that needs two overlapping rules, write without read and read
// without write. A refused Get does not tell whether the key exists; a
// refused write writes nothing.
func TestAuthorizationEdges(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	e := newAuthEnv(t, edgesACL, false, "alice", "root", "dave", "eve")
	g := e.start(k, topic, testkit.Options{})
	alice, root, dave, eve := e.as(g, "alice").Client, e.as(g, "root").Client, e.as(g, "dave").Client, e.as(g, "eve").Client
	testkit.Put(t, e.as(g, "alice"), "payments/db", "1")
	testkit.Put(t, e.as(g, "dave"), "paypal/key", "2")

	read := []struct {
		who      string
		c        confgatev1.ConfigServiceClient
		prefixes []string
		denied   string // "" when allowed, else the refused prefix as the message names it
	}{
		{"alice", alice, nil, "every key (the empty selector)"},
		{"alice", alice, []string{""}, "every key (the empty selector)"},
		{"alice", alice, []string{"pay"}, `selector prefix "pay"`},
		{"alice", alice, []string{"payments"}, `selector prefix "payments"`},
		{"alice", alice, []string{"payments/"}, ""},
		{"alice", alice, []string{"payments/db"}, ""},
		{"alice", alice, []string{"payments/", "public/"}, ""}, // two rules
		{"alice", alice, []string{"public/", "secret/"}, `selector prefix "secret/"`},
		{"alice", alice, []string{"payments/", "payments/x"}, ""},
		{"root", root, nil, ""},
		{"dave", dave, []string{"pay"}, ""},
		{"dave", dave, []string{"payments/"}, ""},
		{"dave", dave, []string{"pa"}, `selector prefix "pa"`},
		{"eve", eve, []string{"public/"}, ""},
		{"eve", eve, []string{"payments/"}, `selector prefix "payments/"`},
	}
	for _, tc := range read {
		name := fmt.Sprintf("%s %q", tc.who, tc.prefixes)
		m, err := firstRecv(tc.c, tc.prefixes...)
		serr := snapshotErr(tc.c, tc.prefixes...)
		if tc.denied == "" {
			if err != nil || m == nil {
				t.Errorf("%s: Subscribe: %v", name, err)
			}
			if serr != nil {
				t.Errorf("%s: GetSnapshot: %v", name, serr)
			}
			continue
		}
		// Refused before anything is sent: the first Recv is the error.
		wantCode(t, name+": Subscribe", err, codes.PermissionDenied, tc.denied)
		wantCode(t, name+": GetSnapshot", serr, codes.PermissionDenied, tc.denied)
	}

	ctx, cancel := bg()
	defer cancel()
	for _, tc := range []struct {
		who  string
		c    confgatev1.ConfigServiceClient
		key  string
		code codes.Code
	}{
		{"alice", alice, "payments/db", codes.OK},
		{"alice", alice, "payments/none", codes.NotFound},
		{"alice", alice, "paypal/key", codes.PermissionDenied}, // exists: not revealed
		{"alice", alice, "paypal/none", codes.PermissionDenied},
		{"dave", dave, "paypal/key", codes.OK},
		{"eve", eve, "payments/db", codes.PermissionDenied},
		{"root", root, "paypal/key", codes.OK},
	} {
		_, err := tc.c.Get(ctx, &confgatev1.GetRequest{Key: tc.key})
		if status.Code(err) != tc.code {
			t.Errorf("%s Get %s: %v, want %v", tc.who, tc.key, err, tc.code)
		}
	}

	for _, tc := range []struct {
		who    string
		c      confgatev1.ConfigServiceClient
		key    string
		delete bool
		code   codes.Code
	}{
		{"alice", alice, "payments/new", false, codes.OK},
		{"alice", alice, "shared/x", false, codes.PermissionDenied}, // read, not write
		{"alice", alice, "pay", false, codes.PermissionDenied},
		{"alice", alice, "paypal/key", true, codes.PermissionDenied},
		{"root", root, "payments/db", true, codes.PermissionDenied}, // read everything, write nothing
		{"root", root, "root/x", false, codes.PermissionDenied},
		{"dave", dave, "payments/dave", false, codes.OK},
		{"eve", eve, "public/x", false, codes.PermissionDenied},
	} {
		var err error
		if tc.delete {
			_, err = tc.c.Delete(ctx, &confgatev1.DeleteRequest{Key: tc.key})
		} else {
			_, err = tc.c.Put(ctx, &confgatev1.PutRequest{Key: tc.key, Value: []byte("secret-value")})
		}
		if status.Code(err) != tc.code {
			t.Errorf("%s write %s (delete %v): %v, want %v", tc.who, tc.key, tc.delete, err, tc.code)
		}
		if tc.code == codes.PermissionDenied && !strings.Contains(status.Convert(err).Message(), fmt.Sprintf("may not write key %q", tc.key)) {
			t.Errorf("%s write %s: %v does not name the key", tc.who, tc.key, err)
		}
	}
	// Nothing refused reached the log: it holds the four writes allowed.
	log := k.ReadLog(t, topic)
	var keys []string
	for _, r := range log {
		keys = append(keys, r.Key)
	}
	if len(log) != 4 {
		t.Errorf("the log holds %v, want the 4 allowed writes only", keys)
	}
	for _, m := range []string{"Subscribe", "GetSnapshot", "Get", "Put", "Delete"} {
		if testkit.Metric(t, g, "confgate_gateway_denied_total", "/confgate.v1.ConfigService/"+m) == 0 {
			t.Errorf("denied_total{%s} not counted", m)
		}
	}
	if l := e.log.lines("component=audit", "principal=alice", "method=/confgate.v1.ConfigService/Put", "refused_key=shared/x", "result=PermissionDenied"); len(l) != 1 {
		t.Errorf("audit lines for alice's refused put: %q", l)
	}
	if l := e.log.lines("component=audit", "principal=alice", "refused_prefix=secret/"); len(l) != 2 {
		t.Errorf("audit lines for alice's refused selector: %q", l)
	}
	if strings.Contains(e.log.String(), "secret-value") {
		t.Error("a value is in the log")
	}
}

// The audit headers name the writer and the gateway on every write, in
// the log and in what readers get; a client can neither forge nor
// remove them.
func TestAuditHeaders(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	e := newAuthEnv(t, "rules:\n  - principals: [alice]\n    read: ['']\n    write: ['']\n", false, "alice")
	g := e.start(k, topic, testkit.Options{Gateway: gateway.Config{Name: "gw-audit-1"}})
	alice := e.as(g, "alice").Client
	ctx, cancel := bg()
	defer cancel()
	for _, name := range []string{gateway.WriterHeader, gateway.GatewayHeader, "Confgate-Writer", "CONFGATE-GATEWAY", "confgate-other"} {
		_, err := alice.Put(ctx, &confgatev1.PutRequest{Key: "a/forged", Value: []byte("v"), Headers: []*confgatev1.Header{{Key: name, Value: []byte("token:root")}}})
		wantCode(t, "header "+name, err, codes.InvalidArgument, "are reserved for the audit headers")
	}
	if _, err := alice.Put(ctx, &confgatev1.PutRequest{Key: "a/x", Value: []byte("the-value"), Headers: []*confgatev1.Header{{Key: "by", Value: []byte("ci")}}, WaitApplied: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Delete(ctx, &confgatev1.DeleteRequest{Key: "a/gone", WaitApplied: true}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"by": "ci", gateway.WriterHeader: "token:alice", gateway.GatewayHeader: "gw-audit-1"}
	got, err := alice.Get(ctx, &confgatev1.GetRequest{Key: "a/x"})
	if err != nil {
		t.Fatal(err)
	}
	hs := map[string]string{}
	for _, h := range got.Entry.Headers {
		hs[h.Key] = string(h.Value)
	}
	if !mapsEqual(hs, want) {
		t.Errorf("Get's headers %v, want %v", hs, want)
	}
	log := k.ReadLog(t, topic)
	if len(log) != 2 {
		t.Fatalf("log holds %d records, want 2 (nothing forged was written)", len(log))
	}
	for _, r := range log {
		hs := map[string]string{}
		for _, h := range r.Headers {
			hs[h.Key] = string(h.Value)
		}
		if hs[gateway.WriterHeader] != "token:alice" || hs[gateway.GatewayHeader] != "gw-audit-1" {
			t.Errorf("record %s (tombstone %v) headers %v lack the audit headers", r.Key, r.Tombstone, hs)
		}
	}
	for _, key := range []string{"a/x", "a/gone"} {
		if l := e.log.lines("component=audit", "msg=write", "principal=alice", "key="+key, "result=OK"); len(l) != 1 {
			t.Errorf("audit lines for the write of %s: %q", key, l)
		}
	}
	if strings.Contains(e.log.String(), "the-value") || strings.Contains(e.log.String(), e.tokens["alice"]) {
		t.Error("a value or a token is in the log")
	}
}

// msgKeys are the keys a Subscribe message carries.
func msgKeys(m *confgatev1.SubscribeResponse) []string {
	var keys []string
	for _, e := range m.GetSnapshotChunk().GetEntries() {
		keys = append(keys, e.Key)
	}
	for _, c := range m.GetDelta().GetChanges() {
		if p := c.GetPut(); p != nil {
			keys = append(keys, p.Key)
		}
		if d := c.GetDelete(); d != nil {
			keys = append(keys, d.Key)
		}
	}
	return keys
}

// readOnly reads s until cond holds, failing on any key outside prefix.
func readOnly(t *testing.T, s *testkit.Stream, prefix, what string, cond func(*testkit.Stream) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond(s) {
		m, err := s.Next(time.Until(deadline))
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		for _, k := range msgKeys(m) {
			if !strings.HasPrefix(k, prefix) {
				t.Fatalf("%s: got key %q outside the grant %q", what, k, prefix)
			}
		}
	}
}

const aOnlyACL = `rules:
  - principals: [carol]
    read: [a/]
  - principals: [writer]
    read: ['']
    write: ['']
`

// A principal allowed a/ only never receives a b/ key, whatever message
// carries it: snapshot, delta, resume from the change window, coalesced
// catch-up, and the snapshot that replaces a catch-up too large to
// coalesce. Its selector cannot be wider than a/ ("a" would also select
// ab/), so this shows that every path filters by the selector.
func TestGrantBoundsEveryMessageKind(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	e := newAuthEnv(t, aOnlyACL, false, "carol", "writer")
	// g1 coalesces a slow reader's backlog; g2 cannot (its bound is
	// smaller than the backlog) and snapshots it instead.
	g1 := e.start(k, topic, testkit.Options{Store: store.Config{MaxBatchRecords: 1}, Gateway: gateway.Config{MaxPendingBatches: 8, MaxCoalescedBytes: 3 << 20}})
	g2 := e.start(k, topic, testkit.Options{Store: store.Config{MaxBatchRecords: 1}, Gateway: gateway.Config{MaxPendingBatches: 8, MaxCoalescedBytes: 32 << 10}})
	w := e.as(g1, "writer")
	for _, key := range []string{"a/1", "ab/1", "b/1", "a/2", "b/2"} {
		testkit.Put(t, w, key, "0")
	}
	carol := e.as(g1, "carol")
	for _, p := range []string{"a", "", "ab/"} {
		_, err := firstRecv(carol.Client, p)
		wantCode(t, fmt.Sprintf("selector %q", p), err, codes.PermissionDenied, "may not read")
	}

	live := testkit.Subscribe(t, carol, &confgatev1.SubscribeRequest{Selector: sel("a/")})
	readOnly(t, live, "a/", "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	from := live.Cursor

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var slow []confgatev1.ConfigService_SubscribeClient
	for _, g := range []*testkit.Gateway{g1, g2} {
		c := as(t, g, e.tokens["carol"], grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
		st, err := c.Client.Subscribe(ctx, &confgatev1.SubscribeRequest{Selector: sel("a/")})
		if err != nil {
			t.Fatal(err)
		}
		slow = append(slow, st)
	}
	testkit.Eventually(t, 10*time.Second, "the slow streams open", func() bool {
		return testkit.Metric(t, g1, "confgate_gateway_snapshots_total", "initial") >= 2 && testkit.Metric(t, g2, "confgate_gateway_snapshots_total", "initial") >= 1
	})

	value := strings.Repeat("z", 16<<10)
	var last []byte
	for round := range 20 {
		for i := range 3 {
			for _, p := range []string{"a/", "b/", "ab/"} {
				last = testkit.Put(t, w, fmt.Sprintf("%s%d", p, i), fmt.Sprintf("%02d%s", round, value)).Cursor
			}
		}
	}
	readOnly(t, live, "a/", "deltas", func(s *testkit.Stream) bool { return bytes.Equal(s.Cursor, last) })

	resumed := testkit.Subscribe(t, carol, &confgatev1.SubscribeRequest{Selector: sel("a/"), ResumeCursor: from})
	readOnly(t, resumed, "a/", "resume", func(s *testkit.Stream) bool { return bytes.Equal(s.Cursor, last) })
	if len(resumed.Snapshots) != 0 || testkit.Metric(t, g1, "confgate_gateway_resumes_total", "history") == 0 {
		t.Errorf("the resume was not served from the change window: %d snapshots", len(resumed.Snapshots))
	}

	for i, st := range slow {
		for {
			m, err := st.Recv()
			if err != nil {
				t.Fatalf("slow stream %d: %v", i, err)
			}
			for _, k := range msgKeys(m) {
				if !strings.HasPrefix(k, "a/") {
					t.Fatalf("slow stream %d got key %q outside its grant", i, k)
				}
			}
			if c := m.GetDelta().GetCursor(); bytes.Equal(c, last) {
				break
			}
			if c := m.GetSnapshotEnd().GetCursor(); bytes.Equal(c, last) {
				break
			}
			if c := m.GetProgress().GetCursor(); bytes.Equal(c, last) {
				break
			}
		}
	}
	if n := testkit.Metric(t, g1, "confgate_gateway_coalesced_deltas_total", ""); n == 0 {
		t.Error("g1 sent no coalesced delta: the catch-up path was not tested")
	}
	if n := testkit.Metric(t, g2, "confgate_gateway_snapshots_total", "slow_subscriber"); n == 0 {
		t.Error("g2 sent no slow-subscriber snapshot: that path was not tested")
	}
}

// A grant removed while streams are open ends the streams that no longer
// qualify with PERMISSION_DENIED, in the idle wait and while sending, and
// leaves the others alone.
func TestGrantRemovedMidStream(t *testing.T) {
	k := testkit.StartKafka(t)
	e := newAuthEnv(t, aOnlyACL+"  - principals: [frank]\n    read: [f/]\n", false, "carol", "writer", "frank")
	g := e.start(k, testkit.Topic(t), testkit.Options{})
	w := e.as(g, "writer")
	testkit.Put(t, w, "a/1", "1")
	testkit.Put(t, w, "f/1", "1")
	carol := testkit.Subscribe(t, e.as(g, "carol"), &confgatev1.SubscribeRequest{Selector: sel("a/")})
	frank := testkit.Subscribe(t, e.as(g, "frank"), &confgatev1.SubscribeRequest{Selector: sel("f/")})
	for _, s := range []*testkit.Stream{carol, frank} {
		s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	}
	before := testkit.Metric(t, g, "confgate_gateway_denied_total", "/confgate.v1.ConfigService/Subscribe")

	// carol's grant narrows to a/x/: her selector a/ is no longer within.
	e.setACL(strings.Replace(aOnlyACL, "read: [a/]", "read: [a/x/]", 1) + "  - principals: [frank]\n    read: [f/]\n")
	deadline := time.Now().Add(20 * time.Second)
	var err error
	for err == nil || err == testkit.ErrTimeout {
		if time.Now().After(deadline) {
			t.Fatal("carol's stream still open after her grant was removed")
		}
		_, err = carol.Next(time.Until(deadline))
	}
	wantCode(t, "carol's stream", err, codes.PermissionDenied, `may not read selector prefix "a/"`)
	if n := testkit.Metric(t, g, "confgate_gateway_denied_total", "/confgate.v1.ConfigService/Subscribe") - before; n != 1 {
		t.Errorf("denied{Subscribe} went up by %v, want 1", n)
	}
	// frank's stream is untouched and live.
	testkit.Put(t, w, "f/2", "2")
	frank.Until(10*time.Second, "frank's delta after the change", func(s *testkit.Stream) bool { return s.View["f/2"] != nil })
	// carol may subscribe within what is left.
	if _, err := firstRecv(e.as(g, "carol").Client, "a/x/"); err != nil {
		t.Errorf("carol within her new grant: %v", err)
	}
}

// A JWT principal's stream ends with UNAUTHENTICATED when its token
// expires; the client comes back with a fresh token and resumes.
func TestTokenExpiryMidStream(t *testing.T) {
	k := testkit.StartKafka(t)
	e := newAuthEnv(t, "rules:\n  - principal_prefixes: ['svc:']\n    read: [s/]\n  - principals: [writer]\n    read: ['']\n    write: ['']\n", true, "writer")
	g := e.start(k, testkit.Topic(t), testkit.Options{})
	testkit.Put(t, e.as(g, "writer"), "s/1", "1")
	short := e.issuer.token(t, "svc:api", time.Now().Add(3*time.Second))
	long := e.issuer.token(t, "svc:other", time.Now().Add(time.Hour))
	expiring := testkit.Subscribe(t, as(t, g, short), &confgatev1.SubscribeRequest{Selector: sel("s/")})
	lasting := testkit.Subscribe(t, as(t, g, long), &confgatev1.SubscribeRequest{Selector: sel("s/")})
	expiring.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	lasting.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })

	deadline := time.Now().Add(20 * time.Second)
	var err error
	for err == nil || err == testkit.ErrTimeout {
		if time.Now().After(deadline) {
			t.Fatal("the stream outlived its token")
		}
		_, err = expiring.Next(time.Until(deadline))
	}
	wantCode(t, "expired stream", err, codes.Unauthenticated, "expired at")
	if testkit.Metric(t, g, "confgate_gateway_auth_failures_total", "expired_in_stream") != 1 {
		t.Error("expired_in_stream not counted")
	}
	// The old token no longer opens anything; a fresh one resumes.
	_, err = firstRecv(as(t, g, short).Client, "s/")
	wantCode(t, "expired token", err, codes.Unauthenticated, "expired")
	fresh := testkit.Subscribe(t, as(t, g, e.issuer.token(t, "svc:api", time.Now().Add(time.Hour))), &confgatev1.SubscribeRequest{Selector: sel("s/"), ResumeCursor: expiring.Cursor})
	testkit.Put(t, e.as(g, "writer"), "s/2", "2")
	fresh.View = expiring.View
	fresh.Until(10*time.Second, "the resumed stream's delta", func(s *testkit.Stream) bool { return s.View["s/2"] != nil })
	lasting.Until(10*time.Second, "the other stream's delta", func(s *testkit.Stream) bool { return s.View["s/2"] != nil })
}

// Each principal has its own bound on open streams and on writes per
// second; a principal at its bound does not affect another.
func TestPrincipalLimits(t *testing.T) {
	k := testkit.StartKafka(t)
	e := newAuthEnv(t, "rules:\n  - authenticated: true\n    read: ['']\n    write: ['']\n", false, "noisy", "quiet")
	g := e.start(k, testkit.Topic(t), testkit.Options{Gateway: gateway.Config{MaxStreamsPerPrincipal: 2, MaxWritesPerSecond: 1}})
	noisy, quiet := e.as(g, "noisy"), e.as(g, "quiet")

	s1 := testkit.Subscribe(t, noisy, &confgatev1.SubscribeRequest{})
	s2 := testkit.Subscribe(t, noisy, &confgatev1.SubscribeRequest{})
	for _, s := range []*testkit.Stream{s1, s2} {
		s.Until(10*time.Second, "snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	}
	_, err := firstRecv(noisy.Client)
	wantCode(t, "third stream", err, codes.ResourceExhausted, "limit of 2 open streams")
	wantCode(t, "third stream (snapshot)", snapshotErr(noisy.Client), codes.ResourceExhausted, "limit of 2 open streams")
	if n := testkit.Metric(t, g, "confgate_gateway_refused_total", "principal_streams"); n != 2 {
		t.Errorf("refused{principal_streams} = %v, want 2", n)
	}
	q := testkit.Subscribe(t, quiet, &confgatev1.SubscribeRequest{})
	q.Until(10*time.Second, "quiet's snapshot", func(s *testkit.Stream) bool { return len(s.Snapshots) == 1 })
	// A stream that ends gives its place back.
	s1.Close()
	testkit.Eventually(t, 10*time.Second, "noisy's closed stream to be released", func() bool {
		_, err := firstRecv(noisy.Client)
		return err == nil
	})

	// Writes: a burst of 10, then one a second.
	ctx, cancel := bg()
	defer cancel()
	refused := 0
	for i := 0; i < 100 && refused == 0; i++ {
		_, err := noisy.Client.Put(ctx, &confgatev1.PutRequest{Key: fmt.Sprintf("n/%d", i), Value: []byte("v")})
		switch status.Code(err) {
		case codes.OK:
		case codes.ResourceExhausted:
			refused++
			wantCode(t, "write over the rate", err, codes.ResourceExhausted, "limit of 1 writes per second")
			if i < 10 {
				t.Errorf("refused write %d, within the burst of 10", i)
			}
		default:
			t.Fatalf("write %d: %v", i, err)
		}
	}
	if refused == 0 {
		t.Fatal("100 writes at once were never refused at 1 per second")
	}
	if n := testkit.Metric(t, g, "confgate_gateway_refused_total", "principal_writes"); n != 1 {
		t.Errorf("refused{principal_writes} = %v, want 1", n)
	}
	if _, err := quiet.Client.Put(ctx, &confgatev1.PutRequest{Key: "q/1", Value: []byte("v")}); err != nil {
		t.Errorf("quiet's write while noisy is limited: %v", err)
	}
}

// /debug/state says nothing of keys or values: the admin listener has no
// authentication, so it must not serve what the ACL guards.
// With credentials configured, the admin listener serves the probes
// (/healthz, /readyz) to anyone but says only ready and stale there;
// /debug/state and /metrics need a credential of a principal that may
// read every key (over plain HTTP a bearer token; with AdminTLS a client
// certificate too). No endpoint ever serves a key or a value.
func TestAdminEndpointsGuarded(t *testing.T) {
	k := testkit.StartKafka(t)
	e := newAuthEnv(t, aOnlyACL, false, "writer", "carol")
	g := e.start(k, testkit.Topic(t), testkit.Options{})
	testkit.Put(t, e.as(g, "writer"), "b/secret-key", "secret-value")
	get := func(path, token string) (int, string) {
		req, err := http.NewRequest(http.MethodGet, "http://"+g.Admin+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if bytes.Contains(body, []byte("secret")) {
			t.Errorf("%s serves a key or value: %s", path, body)
		}
		return resp.StatusCode, string(body)
	}
	for _, tc := range []struct {
		path, who string
		code      int
		has       string
	}{
		{"/healthz", "", http.StatusOK, `{"ready":true,"stale":false}`},
		{"/readyz", "", http.StatusOK, `{"ready":true,"stale":false}`},
		{"/debug/state", "", http.StatusUnauthorized, "accepts"},
		{"/metrics", "", http.StatusUnauthorized, "accepts"},
		{"/debug/state", "nobody", http.StatusUnauthorized, ""},
		{"/debug/state", "carol", http.StatusForbidden, "read access to every key"},
		{"/metrics", "carol", http.StatusForbidden, "read access to every key"},
		{"/debug/state", "writer", http.StatusOK, `"entries":1`},
		{"/metrics", "writer", http.StatusOK, "confgate_gateway_auth_failures_total"},
		{"/debug/pprof/", "", http.StatusUnauthorized, "accepts"},
		{"/debug/pprof/heap", "carol", http.StatusForbidden, "read access to every key"},
		{"/debug/pprof/cmdline", "", http.StatusUnauthorized, "accepts"},
		{"/debug/pprof/", "writer", http.StatusOK, "goroutine"},
	} {
		token := e.tokens[tc.who]
		if tc.who == "nobody" {
			token = "cgt_" + strings.Repeat("x", 43)
		}
		code, body := get(tc.path, token)
		if code != tc.code || !strings.Contains(body, tc.has) {
			t.Errorf("%s as %q: %d %q, want %d containing %q", tc.path, tc.who, code, body, tc.code, tc.has)
		}
	}
}
