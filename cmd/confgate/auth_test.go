package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/confgate/confgate/auth"
	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/digest"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// authFiles are valid auth files in a temporary directory.
type authFiles struct {
	dir, tokens, jwks, acl, caPEM, cert, key string
	token                                    string // the one token of tokens, principal "team-a", group "readers"
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newAuthFiles(t *testing.T) *authFiles {
	t.Helper()
	dir := t.TempDir()
	f := &authFiles{dir: dir, tokens: filepath.Join(dir, "tokens"), jwks: filepath.Join(dir, "jwks.json"), acl: filepath.Join(dir, "acl.yaml")}
	tok, hash, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	f.token = tok
	writeFile(t, f.tokens, "# test tokens\n"+hash+" team-a readers\n")
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, f.jwks, string(b))
	writeFile(t, f.acl, `rules:
  - principals: [team-a]
    read: [team-a/, shared/]
    write: [team-a/]
  - groups: [readers]
    read: [public/]
`)
	ca := newTestCA(t, dir, "ca")
	f.caPEM = ca.pem
	f.cert, f.key = ca.issue(t, dir, "gateway", true)
	return f
}

// Server auth flags: consistent sets build an Authenticator and a
// PolicyWatcher; inconsistent ones and files that fail to load are errors
// naming the flag; no flag leaves the gateway open (nil, nil).
func TestServerAuthFlags(t *testing.T) {
	f := newAuthFiles(t)
	badACL := filepath.Join(f.dir, "bad.yaml")
	writeFile(t, badACL, "rules:\n  - principals: [x]\n    raed: [a/]\n")
	badTokens := filepath.Join(f.dir, "bad-tokens")
	writeFile(t, badTokens, "sha256:abc team-a\n")
	jwt := []string{"--auth-jwks", f.jwks, "--auth-jwt-issuer", "https://issuer", "--auth-jwt-audience", "confgate"}
	mtls := []string{"--tls-cert", f.cert, "--tls-key", f.key, "--tls-client-ca", f.caPEM}
	cat := func(as ...[]string) []string {
		var out []string
		for _, a := range as {
			out = append(out, a...)
		}
		return out
	}
	tests := []struct {
		name       string
		args       []string
		want       string // error substring; "" for success
		authn, acl bool   // what a success builds
		clientAuth tls.ClientAuthType
	}{
		{"none", nil, "", false, false, 0},
		{"tokens", []string{"--auth-tokens", f.tokens}, "", true, false, 0},
		{"tokens and acl", []string{"--auth-tokens", f.tokens, "--acl", f.acl}, "", true, true, 0},
		{"acl alone", []string{"--acl", f.acl}, "", false, true, 0},
		{"jwt", jwt, "", true, false, 0},
		{"jwt, two audiences, leeway", cat(jwt, []string{"--auth-jwt-audience", "other", "--auth-jwt-leeway", "1m"}), "", true, false, 0},
		{"mtls requires certificates", mtls, "", true, false, tls.RequireAndVerifyClientCert},
		{"mtls and tokens: certificates optional", cat(mtls, []string{"--auth-tokens", f.tokens}), "", true, false, tls.VerifyClientCertIfGiven},
		{"mtls and anonymous: certificates optional", cat(mtls, []string{"--auth-anonymous"}), "", true, false, tls.VerifyClientCertIfGiven},
		{"cert names", cat(mtls, []string{"--auth-cert-names", "cn,uri"}), "", true, false, tls.RequireAndVerifyClientCert},
		{"anonymous with tokens", []string{"--auth-tokens", f.tokens, "--auth-anonymous"}, "", true, false, 0},

		{"jwks without issuer", []string{"--auth-jwks", f.jwks, "--auth-jwt-audience", "confgate"}, "--auth-jwks needs --auth-jwt-issuer", false, false, 0},
		{"jwks without audience", []string{"--auth-jwks", f.jwks, "--auth-jwt-issuer", "https://issuer"}, "--auth-jwks needs --auth-jwt-audience", false, false, 0},
		{"empty audience", []string{"--auth-jwks", f.jwks, "--auth-jwt-issuer", "i", "--auth-jwt-audience", " "}, "--auth-jwt-audience is empty", false, false, 0},
		{"issuer without jwks", []string{"--auth-jwt-issuer", "https://issuer"}, "--auth-jwt-issuer needs --auth-jwks", false, false, 0},
		{"audience without jwks", []string{"--auth-jwt-audience", "confgate"}, "--auth-jwt-audience needs --auth-jwks", false, false, 0},
		{"leeway without jwks", []string{"--auth-jwt-leeway", "10s"}, "--auth-jwt-leeway needs --auth-jwks", false, false, 0},
		{"leeway too long", cat(jwt, []string{"--auth-jwt-leeway", "10m"}), "--auth-jwt-leeway 10m0s", false, false, 0},
		{"cert names without client CA", []string{"--auth-cert-names", "cn"}, "--auth-cert-names needs --tls-client-ca", false, false, 0},
		{"unknown cert name", cat(mtls, []string{"--auth-cert-names", "uri,email"}), `"email" is not a certificate name`, false, false, 0},
		{"cert name twice", cat(mtls, []string{"--auth-cert-names", "cn,cn"}), "cn is given twice", false, false, 0},
		{"anonymous alone", []string{"--auth-anonymous"}, "--auth-anonymous needs a credential", false, false, 0},
		{"missing tokens file", []string{"--auth-tokens", filepath.Join(f.dir, "nope")}, "--auth-tokens", false, false, 0},
		{"broken tokens file", []string{"--auth-tokens", badTokens}, "--auth-tokens " + badTokens, false, false, 0},
		{"missing jwks", cat([]string{"--auth-jwks", filepath.Join(f.dir, "nope")}, jwt[2:]), "--auth-jwks", false, false, 0},
		{"jwks not JSON", cat([]string{"--auth-jwks", f.acl}, jwt[2:]), "--auth-jwks " + f.acl, false, false, 0},
		{"missing acl", []string{"--acl", filepath.Join(f.dir, "nope.yaml")}, "--acl", false, false, 0},
		{"invalid acl", []string{"--acl", badACL}, "--acl " + badACL, false, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sf := &serverFlags{}
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			sf.register(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			gc, err := sf.gatewayConfig(nil)
			if tt.want != "" {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("err = %v, want one saying %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (gc.Authenticator != nil) != tt.authn || (gc.Policy != nil) != tt.acl {
				t.Errorf("Authenticator %v, Policy %v; want authenticator %v, policy %v", gc.Authenticator != nil, gc.Policy != nil, tt.authn, tt.acl)
			}
			if gc.TLS != nil && gc.TLS.ClientAuth != tt.clientAuth {
				t.Errorf("ClientAuth = %v, want %v", gc.TLS.ClientAuth, tt.clientAuth)
			}
		})
	}
}

// A usage error of the auth flags ends serve and dev with status 2 and one
// line naming the flag, before anything is started.
func TestServerAuthUsageExit(t *testing.T) {
	f := newAuthFiles(t)
	c := cli{t: t, addr: closedPort(t)}
	for _, args := range [][]string{
		{"serve", "--brokers", "127.0.0.1:1", "--topic", "t", "--auth-jwks", f.jwks},
		{"dev", "--listen", "127.0.0.1:0", "--admin-listen", "", "--acl", filepath.Join(f.dir, "missing.yaml")},
	} {
		r := c.run(args...)
		if r.code != exitFailure || !regexp.MustCompile(`^confgate: --(auth-jwks|acl)[ :].*see 'confgate (serve|dev) --help'\)\n$`).MatchString(r.stderr) {
			t.Errorf("confgate %s: exit %d, stderr %q; want 2 and one line naming the flag", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

var tokenNewText = regexp.MustCompile(`^token \(shown once: store it now; the tokens file keeps only its hash\):\n  (cgt_[A-Za-z0-9_-]{43})\n\nline for the gateways' --auth-tokens file:\n  (sha256:[0-9a-f]{64}) (\S+)(?: (\S+))?\n\n`)

func TestTokenNew(t *testing.T) {
	c := cli{t: t, addr: closedPort(t)}
	out := c.ok("token", "new", "--name", "team-a", "--groups", "readers,ops")
	m := tokenNewText.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("output:\n%s", out)
	}
	if auth.HashToken(m[1]) != m[2] || m[3] != "team-a" || m[4] != "readers,ops" {
		t.Errorf("token %s..., line %q %q %q: want the token's hash, team-a and readers,ops", m[1][:8], m[2], m[3], m[4])
	}
	// The line is one the gateways accept, for that token.
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "tokens"), m[2]+" "+m[3]+" "+m[4]+"\n")
	a, err := auth.NewAuthenticator(auth.Config{TokensFile: filepath.Join(dir, "tokens")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+m[1]))
	p, err := a.Authenticate(ctx)
	if err != nil || p.Name != "team-a" || !p.InGroup("ops") || !p.InGroup("readers") {
		t.Errorf("the printed token authenticates as %v, %v", p, err)
	}

	// Fresh every time; a default name from the hash; JSON for scripts.
	out2 := c.ok("token", "new")
	m2 := tokenNewText.FindStringSubmatch(out2)
	if m2 == nil || m2[1] == m[1] || m2[3] != "token-"+m2[2][len("sha256:"):][:12] || m2[4] != "" {
		t.Errorf("second token, no name:\n%s", out2)
	}
	lines := jsonLines(t, c.ok("token", "new", "--name", "ci", "-o", "json"))
	if len(lines) != 1 || auth.HashToken(lines[0]["token"].(string)) != lines[0]["hash"] || lines[0]["tokens_file_line"] != lines[0]["hash"].(string)+" ci" {
		t.Errorf("json: %v", lines)
	}

	for _, args := range [][]string{{"token", "new", "--name", "two words"}, {"token", "new", "--name", "a", "--groups", "x,,y"}, {"token", "new", "--name", "#x"}, {"token"}} {
		if r := c.run(args...); r.code != exitFailure || r.stdout != "" {
			t.Errorf("confgate %s: exit %d, stdout %q", strings.Join(args, " "), r.code, r.stdout)
		}
	}
}

// metaGateway is a ConfigService that answers every verb and records the
// authorization metadata of each call.
type metaGateway struct {
	confgatev1.UnimplementedConfigServiceServer
	addr string
	mu   sync.Mutex
	seen map[string][]string // method -> authorization values, one per call
}

func startMetaGateway(t *testing.T) *metaGateway {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &metaGateway{addr: lis.Addr().String(), seen: map[string][]string{}}
	record := func(ctx context.Context, method string) {
		md, _ := metadata.FromIncomingContext(ctx)
		g.mu.Lock()
		defer g.mu.Unlock()
		g.seen[method] = append(g.seen[method], strings.Join(md.Get("authorization"), "|"))
	}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			record(ctx, info.FullMethod)
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			record(ss.Context(), info.FullMethod)
			return h(srv, ss)
		}))
	confgatev1.RegisterConfigServiceServer(srv, g)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return g
}

func (g *metaGateway) last(method string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	s := g.seen["/confgate.v1.ConfigService/"+method]
	if len(s) == 0 {
		return "", false
	}
	return s[len(s)-1], true
}

var fakeCursor = cursor.Cursor{Topic: cursor.TopicID{0xa}, Offsets: []int64{0}}.Encode()

func emptyDigest() []byte {
	var d digest.Digest
	return d.Bytes()
}

func (g *metaGateway) Get(context.Context, *confgatev1.GetRequest) (*confgatev1.GetResponse, error) {
	return &confgatev1.GetResponse{Entry: &confgatev1.Entry{Key: "a", Value: []byte("1"), Version: &confgatev1.Version{}}, Cursor: fakeCursor}, nil
}

func (g *metaGateway) Put(context.Context, *confgatev1.PutRequest) (*confgatev1.PutResponse, error) {
	return &confgatev1.PutResponse{Version: &confgatev1.Version{}, Cursor: fakeCursor}, nil
}

func (g *metaGateway) Delete(context.Context, *confgatev1.DeleteRequest) (*confgatev1.DeleteResponse, error) {
	return &confgatev1.DeleteResponse{Version: &confgatev1.Version{}, Cursor: fakeCursor}, nil
}

func (g *metaGateway) GetSnapshot(_ *confgatev1.GetSnapshotRequest, ss grpc.ServerStreamingServer[confgatev1.GetSnapshotResponse]) error {
	return ss.Send(&confgatev1.GetSnapshotResponse{Message: &confgatev1.GetSnapshotResponse_End{End: &confgatev1.SnapshotEnd{Cursor: fakeCursor, Digest: emptyDigest()}}})
}

func (g *metaGateway) Subscribe(_ *confgatev1.SubscribeRequest, ss grpc.ServerStreamingServer[confgatev1.SubscribeResponse]) error {
	return ss.Send(&confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_SnapshotEnd{SnapshotEnd: &confgatev1.SnapshotEnd{Cursor: fakeCursor, Digest: emptyDigest()}}})
}

// Every verb sends the token as "authorization: Bearer <token>", from
// --token, --token-file or the environment; without one, none is sent.
func TestCLISendsToken(t *testing.T) {
	g := startMetaGateway(t)
	tok := "cgt_" + strings.Repeat("t", 43)
	file := filepath.Join(t.TempDir(), "token")
	writeFile(t, file, tok+"\n")
	verbs := []struct {
		method string
		args   []string
	}{
		{"Get", []string{"get", "a"}},
		{"Put", []string{"put", "a", "1"}},
		{"Delete", []string{"delete", "a"}},
		{"GetSnapshot", []string{"snapshot"}},
		{"Subscribe", []string{"watch", "--duration", "500ms"}},
	}
	for _, how := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"--token", []string{"--token", tok}, nil, "Bearer " + tok},
		{"--token-file", []string{"--token-file", file}, nil, "Bearer " + tok},
		{"env token", nil, map[string]string{tokenEnv: tok}, "Bearer " + tok},
		{"env token file", nil, map[string]string{tokenFileEnv: file}, "Bearer " + tok},
		{"flag over env", []string{"--token-file", file}, map[string]string{tokenEnv: "cgt_" + strings.Repeat("e", 43)}, "Bearer " + tok},
		{"none", nil, nil, ""},
	} {
		t.Run(how.name, func(t *testing.T) {
			for _, v := range verbs {
				var out, errb syncBuffer
				env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
					if k == addrEnv {
						return g.addr
					}
					return how.env[k]
				}}
				if code := run(t.Context(), append(v.args, how.args...), env); code != 0 {
					t.Fatalf("%s: exit %d: %s", v.args[0], code, errb.String())
				}
				got, ok := g.last(v.method)
				if !ok || got != how.want {
					t.Errorf("%s sent authorization %q (called: %v), want %q", v.args[0], got, ok, how.want)
				}
			}
		})
	}
}

// Token flags: conflicts, and plaintext to an address that is not
// loopback, are usage errors (status 2) before anything is sent; the
// message never holds the token.
func TestClientTokenFlags(t *testing.T) {
	tok := "cgt_" + strings.Repeat("s", 43)
	file := filepath.Join(t.TempDir(), "token")
	writeFile(t, file, tok)
	down := closedPort(t)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"both flags", []string{"--token", tok, "--token-file", file}, nil, "--token and --token-file exclude each other"},
		{"both env", nil, map[string]string{tokenEnv: tok, tokenFileEnv: file}, "CONFGATE_TOKEN and CONFGATE_TOKEN_FILE are both set"},
		{"plaintext to a remote gateway", []string{"--token", tok, "--addr", down + ",10.1.2.3:50051"}, nil, "refusing to send the bearer token in plaintext to 10.1.2.3:50051"},
		{"env token too", []string{"--addr", "gw.example:50051"}, map[string]string{tokenEnv: tok}, "refusing to send the bearer token in plaintext to gw.example:50051"},
		{"missing token file", []string{"--token-file", file + ".nope"}, nil, "--token-file: token file: stat"},
		{"token with a space", []string{"--token", "two words"}, nil, "--token: the token has a space"},
		{"Bearer prefix", []string{"--token", "Bearer " + tok}, nil, `starts with "Bearer "`},
		// Allowed, so the call is made (and fails: no gateway there).
		{"insecure token allowed", []string{"--token", tok, "--insecure-token", "--addr", "10.255.255.1:1", "--timeout", "200ms"}, nil, "10.255.255.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb syncBuffer
			env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
				if k == addrEnv {
					return down
				}
				return tt.env[k]
			}}
			code := run(t.Context(), append([]string{"get", "a"}, tt.args...), env)
			if code != exitFailure || !strings.Contains(errb.String(), tt.want) || (strings.Contains(tt.name, "allowed") && strings.Contains(errb.String(), "refusing")) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, errb.String(), tt.want)
			}
			if strings.Contains(errb.String(), tok) {
				t.Fatalf("stderr holds the token: %q", errb.String())
			}
		})
	}
	// serve, dev and token ignore the client's token settings.
	var out, errb syncBuffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(k string) string {
		return map[string]string{tokenEnv: "bad token", tokenFileEnv: file}[k]
	}}
	if code := run(t.Context(), []string{"token", "new"}, env); code != 0 {
		t.Errorf("token new with a bad CONFGATE_TOKEN: exit %d: %s", code, errb.String())
	}
}
