package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// Bearer tokens (Config.Token, Config.TokenFile).
//
// A token travels as "authorization: Bearer <token>" metadata on every
// call, which is what gateways with --auth-tokens or --auth-jwks read. It
// is a grpc PerRPCCredentials, so it is attached by gRPC itself to every
// RPC of every connection, streams and their reconnects included.
//
// A token read from a file is re-read when the file changes, so rotated
// tokens (a Kubernetes projected service-account token, a SPIFFE JWT-SVID
// written by an agent, a token a deployment tool rewrites) are picked up
// without a restart: at most once per tokenFileCheck a call stats the
// file, and reads it again when its identity, size or modification time
// moved. A file that cannot be read or holds no valid token then leaves
// the previous token in use (a writer caught mid-rotation, a volume
// briefly remounted) and is logged; only a file that never held a valid
// token fails calls, with UNAUTHENTICATED and the reason.
//
// The token never appears in an error or a log line: they name the file
// and what is wrong with its content, never the content.

// tokenFileCheck is the least time between two checks of a token file.
const tokenFileCheck = time.Second

// maxTokenFileSize bounds what a token file read takes in; JWTs are a few
// KiB, gateways refuse tokens over 16 KiB.
const maxTokenFileSize = 64 << 10

// TokenCredentials returns gRPC per-RPC credentials that send a bearer
// token as "authorization: Bearer <token>" metadata on every call: token
// itself, or the token held in file (exactly one of them),
// re-read when the file changes. A file that is missing or holds no valid
// token now is an error.
//
// requireTLS is what the credentials tell gRPC through
// RequireTransportSecurity: when true, gRPC refuses to open a connection
// without transport security ("cannot send secure credentials on an
// insecure connection") rather than send the token in plaintext. Config
// sets it unless every address is on the loopback interface or
// InsecureToken is set; the CLI does the same for --token.
//
// Services set Config.Token or Config.TokenFile instead; this is for
// tools making their own connections (the confgate CLI's unary calls).
func TokenCredentials(token, file string, requireTLS bool) (credentials.PerRPCCredentials, error) {
	return newTokenCredentials(token, file, requireTLS, nil)
}

func newTokenCredentials(token, file string, requireTLS bool, log *slog.Logger) (*tokenCredentials, error) {
	c := &tokenCredentials{requireTLS: requireTLS}
	switch {
	case token != "" && file != "":
		return nil, errors.New("a token and a token file exclude each other: give one")
	case token != "":
		if err := checkToken(token); err != nil {
			return nil, fmt.Errorf("the token %w", err)
		}
		c.token = token
	case file != "":
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		c.file = &tokenFile{path: file, now: time.Now, log: log}
		if _, err := c.file.get(); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("no token and no token file given")
	}
	return c, nil
}

// tokenCredentials is a bearer token as grpc PerRPCCredentials.
type tokenCredentials struct {
	token      string     // a fixed token; "" with a file
	file       *tokenFile // nil with a fixed token
	requireTLS bool
}

var _ credentials.PerRPCCredentials = (*tokenCredentials)(nil)

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c *tokenCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok := c.token
	if c.file != nil {
		var err error
		if tok, err = c.file.get(); err != nil {
			return nil, status.Error(codes.Unauthenticated, err.Error())
		}
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials.
func (c *tokenCredentials) RequireTransportSecurity() bool { return c.requireTLS }

// tokenFile is a token kept in a file, re-read when the file changes.
type tokenFile struct {
	path string
	now  func() time.Time
	log  *slog.Logger

	mu      sync.Mutex // guards the fields below
	token   string     // the last valid token read; "" before one was
	info    os.FileInfo
	checked time.Time
	err     error // why the current file is not in use; reported once
}

// get returns the token in force, checking the file first when the last
// check is older than tokenFileCheck.
func (f *tokenFile) get() (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	if f.token != "" && now.Sub(f.checked) < tokenFileCheck && !now.Before(f.checked) {
		return f.token, nil
	}
	f.checked = now
	tok, info, err := f.read()
	switch {
	case err == nil:
		if f.err != nil && f.token != "" {
			f.log.Info("token file readable again, its token is in use", "file", f.path)
		}
		f.token, f.info, f.err = tok, info, nil
	case f.token == "":
		f.err = err
		return "", err
	default:
		if f.err == nil || f.err.Error() != err.Error() {
			f.log.Warn("token file unusable, still sending the token read from it before", "file", f.path, "err", err)
		}
		f.err = err
	}
	return f.token, nil
}

// read reads the file unless it is the one already read (same file, size
// and modification time).
func (f *tokenFile) read() (string, os.FileInfo, error) {
	info, err := os.Stat(f.path)
	if err != nil {
		return "", nil, fmt.Errorf("token file: %w", err)
	}
	if f.info != nil && f.token != "" && os.SameFile(f.info, info) && info.Size() == f.info.Size() && info.ModTime().Equal(f.info.ModTime()) {
		return f.token, f.info, nil
	}
	if !info.Mode().IsRegular() {
		return "", nil, fmt.Errorf("token file %s is not a regular file", f.path)
	}
	if info.Size() > maxTokenFileSize {
		return "", nil, fmt.Errorf("token file %s is %d bytes, more than the %d a token file may hold", f.path, info.Size(), maxTokenFileSize)
	}
	b, err := os.ReadFile(f.path)
	if err != nil {
		return "", nil, fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if err := checkToken(tok); err != nil {
		return "", nil, fmt.Errorf("token file %s: the token %w", f.path, err)
	}
	return tok, info, nil
}

// checkToken reports what makes tok unfit for an authorization header,
// without quoting it: a bearer token is one word of visible ASCII (RFC 6750
// b64token; JWTs and confgate's cgt_ tokens are).
func checkToken(tok string) error {
	if tok == "" {
		return errors.New("is empty")
	}
	if strings.HasPrefix(tok, "Bearer ") || strings.HasPrefix(tok, "bearer ") {
		return errors.New(`starts with "Bearer ": give the token alone, the prefix is added`)
	}
	for i := 0; i < len(tok); i++ {
		if c := tok[i]; c <= ' ' || c >= 0x7f {
			return fmt.Errorf("has a space, control or non-ASCII byte at offset %d: a bearer token is one word of visible ASCII", i)
		}
	}
	return nil
}

// loopbackTarget reports whether a gRPC target is on this host: an address
// on the loopback interface (127.0.0.0/8, ::1, "localhost") or a Unix
// socket. Names are not resolved: only these spellings count.
func loopbackTarget(target string) bool {
	if strings.HasPrefix(target, "unix:") || strings.HasPrefix(target, "unix-abstract:") {
		return true
	}
	if i := strings.Index(target, ":///"); i >= 0 {
		target = target[i+len(":///"):]
	}
	host := target
	if h, _, err := net.SplitHostPort(target); err == nil {
		host = h
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
