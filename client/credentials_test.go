package client

import (
	"crypto/tls"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// A token long enough for gateways (auth.MinTokenLen) and shaped like
// `confgate token new` output.
const (
	tokenA = "cgt_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	tokenB = "cgt_bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

func TestCheckToken(t *testing.T) {
	for _, tt := range []struct{ tok, want string }{
		{tokenA, ""},
		{"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", ""},
		{"", "empty"},
		{"Bearer " + tokenA, `"Bearer "`},
		{"two words", "offset 3"},
		{"tab\there", "offset 3"},
		{"ünï", "offset 0"},
		{"nl\n", "offset 2"},
	} {
		err := checkToken(tt.tok)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("checkToken(%q) = %v, want nil", tt.tok, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("checkToken(%q) = %v, want an error mentioning %q", tt.tok, err, tt.want)
		case err != nil && len(tt.tok) > 4 && strings.Contains(err.Error(), tt.tok):
			t.Errorf("checkToken error quotes the token: %v", err)
		}
	}
}

func TestLoopbackTarget(t *testing.T) {
	for target, want := range map[string]bool{
		"127.0.0.1:1":               true,
		"127.9.9.9:1":               true,
		"[::1]:1":                   true,
		"localhost:50051":           true,
		"LOCALHOST:1":               true,
		"localhost":                 true,
		"dns:///localhost:50051":    true,
		"passthrough:///[::1]:1":    true,
		"unix:///run/confgate.sock": true,
		"unix-abstract:confgate":    true,
		"10.0.0.5:50051":            false,
		"gateway.internal:50051":    false,
		"localhost.evil.com:50051":  false,
		"dns:///gw:443":             false,
		"[::]:50051":                false,
		"0.0.0.0:50051":             false,
	} {
		if got := loopbackTarget(target); got != want {
			t.Errorf("loopbackTarget(%q) = %v, want %v", target, got, want)
		}
	}
}

func writeToken(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// A token file is re-read when it changes, at most once per check
// interval; a file broken or gone later keeps the last good token; one
// that never held a token is an error that does not quote the file.
func TestTokenFileRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	writeToken(t, path, tokenA+"\n")
	now := time.Unix(1000, 0)
	f := &tokenFile{path: path, now: func() time.Time { return now }, log: slog.New(slog.DiscardHandler)}
	get := func(want string) {
		t.Helper()
		got, err := f.get()
		if err != nil || got != want {
			t.Fatalf("get = %.8s..., %v; want %.8s...", got, err, want)
		}
	}
	get(tokenA)

	// Rotated like a Kubernetes projected volume: a new file renamed over.
	tmp := filepath.Join(dir, "token.new")
	writeToken(t, tmp, "  "+tokenB+"  \n")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	get(tokenA) // within the check interval: not looked at
	now = now.Add(tokenFileCheck)
	get(tokenB)

	// Broken, then gone: the last good token stays.
	now = now.Add(tokenFileCheck)
	writeToken(t, path, "not a token\n")
	get(tokenB)
	if f.err == nil || !strings.Contains(f.err.Error(), "space") {
		t.Errorf("broken file not recorded: %v", f.err)
	}
	now = now.Add(tokenFileCheck)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	get(tokenB)
	now = now.Add(tokenFileCheck)
	writeToken(t, path, tokenA)
	get(tokenA)
	if f.err != nil {
		t.Errorf("error kept after a good read: %v", f.err)
	}

	// Never valid: an error, without the content.
	for content, want := range map[string]string{"": "empty", "Bearer " + tokenA: "Bearer", "secret words": "space"} {
		writeToken(t, path, content)
		_, err := newTokenCredentials("", path, false, nil)
		if err == nil || !strings.Contains(err.Error(), want) || (content != "" && strings.Contains(err.Error(), content)) {
			t.Errorf("token file %q: err %v, want one mentioning %q without the content", content, err, want)
		}
	}
	if _, err := newTokenCredentials("", filepath.Join(dir, "missing"), false, nil); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing token file: %v", err)
	}
}

func TestTokenConfigValidation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	writeToken(t, path, tokenA)
	tlsOpts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{}))}
	plainOpts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	tests := []struct {
		name string
		cfg  Config
		want string // "" when valid
	}{
		{"token on loopback", Config{Addrs: []string{"127.0.0.1:1", "localhost:2"}, Token: tokenA}, ""},
		{"file on loopback", Config{Addrs: []string{"[::1]:1"}, TokenFile: path}, ""},
		{"token and file", Config{Addrs: []string{"127.0.0.1:1"}, Token: tokenA, TokenFile: path}, "exclude each other"},
		{"plaintext to a remote gateway", Config{Addrs: []string{"127.0.0.1:1", "10.0.0.5:1"}, Token: tokenA}, "plaintext"},
		{"insecure token allowed", Config{Addrs: []string{"10.0.0.5:1"}, Token: tokenA, InsecureToken: true}, ""},
		{"remote over TLS", Config{Addrs: []string{"10.0.0.5:1"}, Token: tokenA, DialOptions: tlsOpts}, ""},
		// gRPC itself refuses credentials requiring security with insecure ones.
		{"remote with insecure dial options", Config{Addrs: []string{"10.0.0.5:1"}, Token: tokenA, DialOptions: plainOpts}, "transport level security"},
		{"loopback with insecure dial options", Config{Addrs: []string{"127.0.0.1:1"}, Token: tokenA, DialOptions: plainOpts}, ""},
		{"bad token", Config{Addrs: []string{"127.0.0.1:1"}, Token: "a b"}, "Config.Token: the token has a space"},
		{"missing file", Config{Addrs: []string{"127.0.0.1:1"}, TokenFile: filepath.Join(dir, "nope")}, "Config.TokenFile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(tt.cfg.DialOptions)
			_, err := tt.cfg.settings()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("valid config refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error %v, want one mentioning %q", err, tt.want)
			case err != nil && strings.Contains(err.Error(), tokenA):
				t.Fatalf("error quotes the token: %v", err)
			}
			if len(tt.cfg.DialOptions) != n || (n > 0 && cap(tt.cfg.DialOptions) != 1) {
				t.Error("the caller's DialOptions were changed")
			}
		})
	}
}

// authRecorder records the authorization metadata of Subscribe calls.
type authRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (r *authRecorder) record(ss stream) {
	md, _ := metadata.FromIncomingContext(ss.Context())
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, strings.Join(md.Get("authorization"), "|"))
}

func (r *authRecorder) get(i int) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[i]
}

// The token arrives as "authorization: Bearer <token>" on every stream, and
// a reconnect after the file was rotated sends the new one.
func TestTokenFileMetadataArrives(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	writeToken(t, path, tokenA+"\n")
	rec := &authRecorder{}
	drop := make(chan struct{})
	gw := startGateway(t, func(call int, _ *confgatev1.SubscribeRequest, ss stream) error {
		rec.record(ss)
		if call == 0 {
			if err := send(ss, snapshot(cur(1), initial, ent("a", "1", 0, 0))...); err != nil {
				return err
			}
			<-drop
			return status.Error(codes.Unavailable, "draining")
		}
		return hold(ss)
	})
	v := startView(t, Config{Addrs: []string{gw.addr}, TokenFile: path})
	waitSynced(t, v)
	if got := rec.get(0); got != "Bearer "+tokenA {
		t.Fatalf("first stream's authorization %q, want Bearer and the file's token", got)
	}
	tmp := path + ".new"
	writeToken(t, tmp, tokenB+"\n")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	time.Sleep(tokenFileCheck + 100*time.Millisecond)
	close(drop)
	gw.request(t, 1)
	if got := rec.get(1); got != "Bearer "+tokenB {
		t.Fatalf("stream after rotation sent %q, want the new token", got)
	}
}

// Credentials that require transport security make gRPC refuse plaintext
// transport credentials outright: the token is never written to such a
// connection.
func TestTokenRequiresTransportSecurity(t *testing.T) {
	creds, err := TokenCredentials(tokenA, "", true)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(creds))
	if err == nil {
		cc.Close()
		t.Fatal("plaintext connection with credentials requiring TLS accepted")
	}
	if !strings.Contains(err.Error(), "transport level security") {
		t.Fatalf("plaintext with credentials requiring TLS: %v", err)
	}
}
