package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

func withBearer(ctx context.Context, v ...string) context.Context {
	md := metadata.MD{}
	for _, s := range v {
		md.Append("authorization", s)
	}
	return metadata.NewIncomingContext(ctx, md)
}

func withCert(ctx context.Context, c *x509.Certificate) context.Context {
	ti := credentials.TLSInfo{State: tls.ConnectionState{
		PeerCertificates: []*x509.Certificate{c},
		VerifiedChains:   [][]*x509.Certificate{{c}},
	}}
	return peer.NewContext(ctx, &peer.Peer{AuthInfo: ti})
}

func testCert() *x509.Certificate {
	u, _ := url.Parse("spiffe://prod/ns/payments/sa/api")
	return &x509.Certificate{
		URIs:     []*url.URL{u},
		DNSNames: []string{"api.payments.svc"},
		Subject:  pkix.Name{CommonName: "payments-api"},
	}
}

func wantAuthErr(t *testing.T, err error, substr string) {
	t.Helper()
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("got %v, want an AuthError", err)
	}
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("code %v", status.Code(err))
	}
	if !strings.Contains(err.Error(), substr) {
		t.Fatalf("%q lacks %q", err, substr)
	}
}

func TestAnonymousMode(t *testing.T) {
	a, err := NewAuthenticator(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Open() {
		t.Fatal("not open")
	}
	// Whatever the caller presents, it is anonymous.
	for _, ctx := range []context.Context{
		context.Background(),
		withBearer(context.Background(), "Bearer whatever"),
		withCert(context.Background(), testCert()),
	} {
		p, err := a.Authenticate(ctx)
		if err != nil || !p.IsAnonymous() || p.Method != MethodAnonymous || p.String() != "anonymous" {
			t.Fatalf("got %v %v", p, err)
		}
	}
}

func TestCertPrincipal(t *testing.T) {
	full := testCert()
	dnsOnly := &x509.Certificate{DNSNames: []string{"a.example", "b.example"}, Subject: pkix.Name{CommonName: "cn"}}
	cnOnly := &x509.Certificate{Subject: pkix.Name{CommonName: "cn-only"}}
	none := &x509.Certificate{}
	for _, tc := range []struct {
		name  string
		order []CertName
		cert  *x509.Certificate
		want  string // "" for an error
	}{
		{"default prefers URI", nil, full, "spiffe://prod/ns/payments/sa/api"},
		{"default falls to DNS", nil, dnsOnly, "a.example"},
		{"default falls to CN", nil, cnOnly, "cn-only"},
		{"no name", nil, none, ""},
		{"order CN first", []CertName{CertCN, CertURI}, full, "payments-api"},
		{"order DNS first", []CertName{CertDNS}, full, "api.payments.svc"},
		{"order URI only, missing", []CertName{CertURI}, dnsOnly, ""},
		{"control char in CN", []CertName{CertCN}, &x509.Certificate{Subject: pkix.Name{CommonName: "a\nb"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAuthenticator(Config{ClientCerts: true, CertNames: tc.order})
			if err != nil {
				t.Fatal(err)
			}
			p, err := a.Authenticate(withCert(context.Background(), tc.cert))
			if tc.want == "" {
				wantAuthErr(t, err, "client certificate")
				return
			}
			if err != nil || p.Name != tc.want || p.Method != MethodCertificate || !p.Expiry.IsZero() {
				t.Fatalf("got %+v %v, want %q", p, err, tc.want)
			}
		})
	}
	if _, err := NewAuthenticator(Config{ClientCerts: true, CertNames: []CertName{"email"}}); err == nil {
		t.Fatal("unknown certificate name accepted")
	}

	a, _ := NewAuthenticator(Config{ClientCerts: true})
	// A certificate the handshake did not verify does not count.
	unverified := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: credentials.TLSInfo{
		State: tls.ConnectionState{PeerCertificates: []*x509.Certificate{full}}}})
	_, err := a.Authenticate(unverified)
	wantAuthErr(t, err, "no credential presented; this gateway accepts a verified client certificate")
	// No peer, no TLS.
	_, err = a.Authenticate(context.Background())
	wantAuthErr(t, err, "no credential")
	// Anonymous allowed for callers without credentials.
	a, _ = NewAuthenticator(Config{ClientCerts: true, Anonymous: true})
	if p, err := a.Authenticate(context.Background()); err != nil || !p.IsAnonymous() {
		t.Fatalf("got %v %v", p, err)
	}
	// A bad credential is never downgraded to anonymous.
	if _, err := a.Authenticate(withCert(context.Background(), none)); err == nil {
		t.Fatal("bad certificate let in as anonymous")
	}
	if _, err := a.Authenticate(withBearer(context.Background(), "Bearer x")); err == nil {
		t.Fatal("bad token let in as anonymous")
	}
}

func TestHashToken(t *testing.T) {
	// sha256("abc"), the FIPS 180-2 test vector.
	if got := HashToken("abc"); got != "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Fatal(got)
	}
	tok, h, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "cgt_") || len(tok) < MinTokenLen || strings.Contains(tok, ".") || HashToken(tok) != h {
		t.Fatalf("token %q hash %q", tok, h)
	}
	tok2, _, _ := NewToken()
	if tok2 == tok {
		t.Fatal("two equal tokens")
	}
}

func TestParseTokens(t *testing.T) {
	h1, h2 := HashToken("token-one-0123456789abcdef0123456789"), HashToken("token-two")
	set, err := parseTokens([]byte("# tokens\n\n" + h1 + "\tci-deployer  deployers,release,deployers\n   " + h2 + " reader\n"))
	if err != nil {
		t.Fatal(err)
	}
	p, ok := set.lookup("token-one-0123456789abcdef0123456789")
	if !ok || p.Name != "ci-deployer" || strings.Join(p.Groups, ",") != "deployers,release" || p.Method != MethodToken {
		t.Fatalf("got %+v %v", p, ok)
	}
	if p, ok := set.lookup("token-two"); !ok || p.Name != "reader" || p.Groups != nil {
		t.Fatalf("got %+v", p)
	}
	if _, ok := set.lookup(h1); ok {
		t.Fatal("the hash itself works as a token")
	}
	for _, tc := range []struct{ name, in, want string }{
		{"plain token", "token-one reader\n", `must start with "sha256:"`},
		{"short hash", "sha256:abcd reader\n", "64 lowercase hex"},
		{"upper hex", strings.ToUpper(h1[:7]) + strings.ToUpper(h1[7:]) + " r\n", `"sha256:"`},
		{"upper hex digits", "sha256:" + strings.ToUpper(h1[7:]) + " r\n", "lowercase"},
		{"not hex", "sha256:" + strings.Repeat("zz", 32) + " r\n", "hex"},
		{"no name", h1 + "\n", "got 1 fields"},
		{"too many fields", h1 + " a b c\n", "got 4 fields"},
		{"duplicate", h1 + " a\n" + h1 + " b\n", "line 2: the hash appears twice"},
		{"empty group", h1 + " a x,,y\n", "group is empty"},
		{"control in name", h1 + " a\x1bb\n", "control"},
		{"not utf8", h1 + " a\xff\n", "UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseTokens([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), h1[7:]) {
				t.Fatal("the error repeats a hash")
			}
		})
	}
}

func TestStaticTokens(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	tokA, hA, _ := NewToken()
	tokB, hB, _ := NewToken()
	writeFile(t, path, hA+" alice admins\n")
	clk := newFakeClock()
	a, err := NewAuthenticator(Config{TokensFile: path, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	p, err := a.Authenticate(withBearer(ctx, "Bearer "+tokA))
	if err != nil || p.Name != "alice" || !p.InGroup("admins") || p.Method != MethodToken {
		t.Fatalf("got %+v %v", p, err)
	}
	if p, err := a.Authenticate(withBearer(ctx, "bearer  "+tokA)); err != nil || p.Name != "alice" {
		t.Fatalf("scheme is case-insensitive: %v", err)
	}
	_, err = a.Authenticate(withBearer(ctx, "Bearer "+tokB))
	wantAuthErr(t, err, "unknown or revoked static token; this gateway accepts a static bearer token")
	if strings.Contains(err.Error(), tokB) {
		t.Fatal("error contains the token")
	}
	for _, tc := range []struct {
		md   []string
		want string
	}{
		{nil, "no credential presented"},
		{[]string{"Basic " + tokA}, `must be "Bearer <token>"`},
		{[]string{tokA}, `must be "Bearer <token>"`},
		{[]string{"Bearer "}, "empty"},
		{[]string{"Bearer short"}, "shorter than 32"},
		{[]string{"Bearer " + tokA, "Bearer " + tokA}, "more than one"},
		{[]string{"Bearer " + strings.Repeat("x", maxTokenLen+1)}, "longer than"},
		{[]string{"Bearer a.b.c"}, "accepts no JWTs"},
	} {
		_, err := a.Authenticate(withBearer(ctx, tc.md...))
		wantAuthErr(t, err, tc.want)
	}
	// A token wins over a certificate, and a bad one is not rescued by it.
	a2, _ := NewAuthenticator(Config{TokensFile: path, ClientCerts: true, Now: clk.Now})
	if p, err := a2.Authenticate(withBearer(withCert(ctx, testCert()), "Bearer "+tokA)); err != nil || p.Name != "alice" {
		t.Fatalf("got %v %v", p, err)
	}
	if _, err := a2.Authenticate(withBearer(withCert(ctx, testCert()), "Bearer "+tokB)); err == nil {
		t.Fatal("bad token rescued by the certificate")
	}
	if p, err := a2.Authenticate(withCert(ctx, testCert())); err != nil || p.Method != MethodCertificate {
		t.Fatalf("got %v %v", p, err)
	}

	// Rotation: B added, A removed; picked up after the poll interval.
	writeFile(t, path, hB+" bob\n")
	if _, err := a.Authenticate(withBearer(ctx, "Bearer "+tokB)); err == nil {
		t.Fatal("reloaded before the poll interval")
	}
	clk.Add(time.Second)
	if p, err := a.Authenticate(withBearer(ctx, "Bearer "+tokB)); err != nil || p.Name != "bob" {
		t.Fatalf("new token: %v %v", p, err)
	}
	if _, err := a.Authenticate(withBearer(ctx, "Bearer "+tokA)); err == nil {
		t.Fatal("revoked token still accepted")
	}
	// Broken file keeps the old set, reported by Err and Reload.
	writeFile(t, path, "this is not a tokens file\n")
	clk.Add(time.Second)
	if p, err := a.Authenticate(withBearer(ctx, "Bearer "+tokB)); err != nil || p.Name != "bob" {
		t.Fatalf("broken file dropped the old set: %v", err)
	}
	if a.Err() == nil || a.Reload() == nil {
		t.Fatal("broken file not reported")
	}
	// Good again.
	writeFile(t, path, hA+" alice\n")
	clk.Add(time.Second)
	if p, err := a.Authenticate(withBearer(ctx, "Bearer "+tokA)); err != nil || p.Name != "alice" {
		t.Fatalf("good file not applied: %v", err)
	}
	if a.Err() != nil {
		t.Fatal(a.Err())
	}

	// Missing at start is an error.
	if _, err := NewAuthenticator(Config{TokensFile: filepath.Join(dir, "nope")}); err == nil {
		t.Fatal("missing tokens file accepted")
	}
}

// --- JWT ---

type testIssuer struct {
	key  *ecdsa.PrivateKey
	kid  string
	jwks string
}

func newTestIssuer(t testing.TB, kid string) *testIssuer {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pub := jose.JSONWebKey{Key: &k.PublicKey, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}})
	if err != nil {
		t.Fatal(err)
	}
	return &testIssuer{key: k, kid: kid, jwks: string(b)}
}

func (is *testIssuer) sign(t testing.TB, claims any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if is.kid != "" {
		opts = opts.WithHeader("kid", is.kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: is.key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestJWT(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "jwks.json")
	is := newTestIssuer(t, "k1")
	writeFile(t, path, is.jwks)
	clk := newFakeClock()
	now := clk.Now()
	a, err := NewAuthenticator(Config{Now: clk.Now, JWT: JWTConfig{
		JWKSFile: path, Issuer: "https://issuer.example", Audiences: []string{"confgate"},
		Leeway: 10 * time.Second, GroupsClaim: "groups",
	}})
	if err != nil {
		t.Fatal(err)
	}
	base := func() map[string]any {
		return map[string]any{
			"iss": "https://issuer.example", "aud": []string{"other", "confgate"},
			"sub": "system:serviceaccount:payments:api", "exp": now.Add(time.Hour).Unix(),
			"iat": now.Add(-time.Minute).Unix(), "nbf": now.Add(-time.Minute).Unix(),
			"groups": []string{"payments", "readers"},
		}
	}
	with := func(k string, v any) map[string]any {
		m := base()
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	ctx := context.Background()
	p, err := a.Authenticate(withBearer(ctx, "Bearer "+is.sign(t, base())))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "system:serviceaccount:payments:api" || p.Method != MethodJWT || !p.InGroup("readers") ||
		!p.Expiry.Equal(now.Add(time.Hour).Add(10*time.Second)) {
		t.Fatalf("got %+v", p)
	}

	other := newTestIssuer(t, "k1") // same kid, other key
	unknown := newTestIssuer(t, "k9")
	noKid := &testIssuer{key: is.key}
	hs := func() string {
		s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: []byte(strings.Repeat("k", 32))}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
		tok, _ := jwt.Signed(s).Claims(base()).Serialize()
		return tok
	}()
	none := func() string {
		enc := base64.RawURLEncoding.EncodeToString
		h, _ := json.Marshal(map[string]string{"alg": "none", "kid": "k1"})
		c, _ := json.Marshal(base())
		return enc(h) + "." + enc(c) + "."
	}()
	good := is.sign(t, base())
	tampered := func() string {
		parts := strings.Split(good, ".")
		c, _ := json.Marshal(with("sub", "root"))
		return parts[0] + "." + base64.RawURLEncoding.EncodeToString(c) + "." + parts[2]
	}()
	for _, tc := range []struct {
		name, token, want string
	}{
		{"expired", is.sign(t, with("exp", now.Add(-11*time.Second).Unix())), "expired"},
		{"no exp", is.sign(t, with("exp", nil)), "no expiry"},
		{"not yet valid", is.sign(t, with("nbf", now.Add(time.Minute).Unix())), "not valid before"},
		{"issued in the future", is.sign(t, with("iat", now.Add(time.Minute).Unix())), "future"},
		{"wrong issuer", is.sign(t, with("iss", "https://evil.example")), "issuer"},
		{"no issuer", is.sign(t, with("iss", nil)), "issuer"},
		{"wrong audience", is.sign(t, with("aud", "other")), "audience"},
		{"no audience", is.sign(t, with("aud", nil)), "audience"},
		{"no subject", is.sign(t, with("sub", nil)), "subject"},
		{"bad groups", is.sign(t, with("groups", 7)), "groups"},
		{"bad signature", other.sign(t, base()), "signature"},
		{"tampered claims", tampered, "signature"},
		{"unknown kid", unknown.sign(t, base()), `key "k9", which is not in the JWKS`},
		{"alg none", none, `algorithm "none" is not accepted`},
		{"alg HS256", hs, `algorithm "HS256" is not accepted`},
		{"garbage", "a.b.c", "not a valid signed JWT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := a.Authenticate(withBearer(ctx, "Bearer "+tc.token))
			wantAuthErr(t, err, tc.want)
			if strings.Contains(err.Error(), tc.token) {
				t.Fatal("error contains the token")
			}
		})
	}
	// Within the leeway.
	if _, err := a.Authenticate(withBearer(ctx, "Bearer "+is.sign(t, with("exp", now.Add(-9*time.Second).Unix())))); err != nil {
		t.Fatalf("within leeway: %v", err)
	}
	// No kid: the only key fits.
	if _, err := a.Authenticate(withBearer(ctx, "Bearer "+noKid.sign(t, base()))); err != nil {
		t.Fatalf("no kid, one key: %v", err)
	}
	// Static tokens are not configured.
	_, err = a.Authenticate(withBearer(ctx, "Bearer "+strings.Repeat("x", 40)))
	wantAuthErr(t, err, "accepts no static tokens")

	// Key rotation through the file: k9 added.
	var set jose.JSONWebKeySet
	_ = json.Unmarshal([]byte(is.jwks), &set)
	var set2 jose.JSONWebKeySet
	_ = json.Unmarshal([]byte(unknown.jwks), &set2)
	set.Keys = append(set.Keys, set2.Keys...)
	b, _ := json.Marshal(set)
	writeFile(t, path, string(b))
	clk.Add(time.Second)
	if _, err := a.Authenticate(withBearer(ctx, "Bearer "+unknown.sign(t, base()))); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
	// Two keys now: a token without kid is ambiguous.
	_, err = a.Authenticate(withBearer(ctx, "Bearer "+noKid.sign(t, base())))
	wantAuthErr(t, err, "names no key")
	// A broken JWKS keeps the keys.
	writeFile(t, path, `{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}`)
	clk.Add(time.Second)
	if _, err := a.Authenticate(withBearer(ctx, "Bearer "+unknown.sign(t, base()))); err != nil {
		t.Fatalf("broken JWKS dropped the keys: %v", err)
	}
	if err := a.Err(); err == nil || !strings.Contains(err.Error(), "not a public key") {
		t.Fatalf("Err = %v", err)
	}
}

func TestJWTSubjectPrefix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jwks.json")
	is := newTestIssuer(t, "k1")
	writeFile(t, path, is.jwks)
	clk := newFakeClock()
	a, err := NewAuthenticator(Config{Now: clk.Now, JWT: JWTConfig{
		JWKSFile: path, Issuer: "spire", Audiences: []string{"confgate"}, SubjectPrefix: "spiffe://prod/",
	}})
	if err != nil {
		t.Fatal(err)
	}
	claims := func(sub string) map[string]any {
		return map[string]any{"iss": "spire", "aud": "confgate", "sub": sub, "exp": clk.Now().Add(time.Minute).Unix()}
	}
	if p, err := a.Authenticate(withBearer(context.Background(), "Bearer "+is.sign(t, claims("spiffe://prod/ns/a/sa/b")))); err != nil || p.Name != "spiffe://prod/ns/a/sa/b" || p.Groups != nil {
		t.Fatalf("got %+v %v", p, err)
	}
	_, err = a.Authenticate(withBearer(context.Background(), "Bearer "+is.sign(t, claims("spiffe://test/ns/a"))))
	wantAuthErr(t, err, "does not start with")
}

func TestJWTConfigErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "jwks.json")
	writeFile(t, path, newTestIssuer(t, "k").jwks)
	for _, tc := range []struct {
		cfg  JWTConfig
		want string
	}{
		{JWTConfig{JWKSFile: path, Audiences: []string{"a"}}, "issuer"},
		{JWTConfig{JWKSFile: path, Issuer: "i"}, "audience"},
		{JWTConfig{JWKSFile: path, Issuer: "i", Audiences: []string{""}}, "audience"},
		{JWTConfig{JWKSFile: path, Issuer: "i", Audiences: []string{"a"}, Leeway: time.Hour}, "leeway"},
		{JWTConfig{JWKSFile: path + ".missing", Issuer: "i", Audiences: []string{"a"}}, "--auth-jwks"},
	} {
		if _, err := NewAuthenticator(Config{JWT: tc.cfg}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestParseJWKS(t *testing.T) {
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	priv, _ := json.Marshal(jose.JSONWebKey{Key: edPriv, KeyID: "p"})
	pubEd, _ := json.Marshal(jose.JSONWebKey{Key: edPriv.Public(), KeyID: "e"})
	for _, tc := range []struct{ name, in, want string }{
		{"not json", "{", "not a JSON Web Key Set"},
		{"no keys", "{}", `no "keys"`},
		{"empty set", `{"keys": []}`, ""},
		{"private key", `{"keys": [` + string(priv) + `]}`, "not a public key"},
		{"symmetric", `{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}`, "not a public key"},
		{"enc key skipped", `{"keys": [{"kty": "whatever", "use": "enc"}]}`, ""},
		{"unknown kty", `{"keys": [{"kty": "whatever"}]}`, "JWKS key 0"},
		{"ed25519", `{"keys": [` + string(pubEd) + `]}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseJWKS([]byte(tc.in))
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}
