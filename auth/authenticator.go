package auth

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// CertName is a place in a client certificate a principal name is taken
// from.
type CertName string

const (
	CertURI CertName = "uri" // the first URI SAN, e.g. a SPIFFE ID spiffe://prod/ns/payments/sa/api
	CertDNS CertName = "dns" // the first DNS SAN
	CertCN  CertName = "cn"  // the subject's Common Name
)

// DefaultCertNames is the order Config.CertNames defaults to.
var DefaultCertNames = []CertName{CertURI, CertDNS, CertCN}

// Config says which credentials an Authenticator accepts. The zero Config
// accepts none, and everyone is the anonymous principal (an open gateway,
// as without auth).
type Config struct {
	// ClientCerts accepts the client certificate a TLS handshake verified
	// (the gateway's --tls-client-ca) as a credential. Only verified
	// chains count: a certificate the handshake did not verify is ignored.
	ClientCerts bool
	// CertNames is the order in which a certificate's names are tried; the
	// first present one is the principal's name. Default DefaultCertNames
	// (URI SAN, then DNS SAN, then CN).
	CertNames []CertName

	// TokensFile holds hashes of static bearer tokens (see HashToken for
	// the format); re-read when it changes. Empty: no static tokens.
	TokensFile string

	// JWT accepts bearer JWTs (see JWTConfig). JWT.JWKSFile empty: none.
	JWT JWTConfig

	// Anonymous lets a caller that presents no credential at all in as the
	// anonymous principal even though credentials are configured (the ACL
	// decides what anonymous may do). A credential that fails is always
	// refused, never downgraded to anonymous. Without any credential
	// configured, everyone is anonymous whatever this says.
	Anonymous bool

	// PollInterval is how often the files are checked for changes (a stat
	// each, done by the Authenticate call that finds the last check older
	// than this). Default DefaultPollInterval (1s).
	PollInterval time.Duration
	// Now is the clock, for tests. Default time.Now.
	Now func() time.Time
	// Logger receives file reload reports (never a token). Default: none.
	Logger *slog.Logger
}

// Authenticator tells who is calling. It is safe for concurrent use.
type Authenticator struct {
	certs     bool
	certNames []CertName
	anonymous bool // credentials configured but callers without one let in
	open      bool // no credential configured: everyone is anonymous
	accepted  string
	jwt       JWTConfig
	now       func() time.Time

	tokens *source[tokenSet] // nil without TokensFile
	jwks   *source[keySet]   // nil without a JWKS file
}

// NewAuthenticator checks cfg and reads its files; a file that is missing
// or broken at start is an error.
func NewAuthenticator(cfg Config) (*Authenticator, error) {
	a := &Authenticator{certs: cfg.ClientCerts, anonymous: cfg.Anonymous, jwt: cfg.JWT, now: cfg.Now}
	if a.now == nil {
		a.now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a.certNames = cfg.CertNames
	if len(a.certNames) == 0 {
		a.certNames = DefaultCertNames
	}
	for _, n := range a.certNames {
		if n != CertURI && n != CertDNS && n != CertCN {
			return nil, fmt.Errorf("certificate name %q: want %q, %q or %q", n, CertURI, CertDNS, CertCN)
		}
	}
	if cfg.TokensFile != "" {
		f := newWatchedFile("--auth-tokens", cfg.TokensFile, MaxTokensFileSize, cfg.PollInterval, a.now)
		s, err := newSource(f, parseTokens, log)
		if err != nil {
			return nil, err
		}
		a.tokens = s
	}
	if j := &a.jwt; j.JWKSFile != "" {
		switch {
		case j.Issuer == "":
			return nil, errors.New("JWTs need an issuer: the exact iss the tokens carry")
		case len(j.Audiences) == 0 || slicesContainsEmpty(j.Audiences):
			return nil, errors.New("JWTs need an audience: a value their aud must contain, e.g. confgate")
		case j.Leeway < 0 || j.Leeway > maxLeeway:
			return nil, fmt.Errorf("JWT clock skew leeway %s: want between 0 and %s", j.Leeway, maxLeeway)
		case j.Leeway == 0:
			j.Leeway = DefaultLeeway
		}
		j.Audiences = append([]string(nil), j.Audiences...)
		f := newWatchedFile("--auth-jwks", j.JWKSFile, MaxJWKSFileSize, cfg.PollInterval, a.now)
		s, err := newSource(f, parseJWKS, log)
		if err != nil {
			return nil, err
		}
		a.jwks = s
	}
	a.open = !a.certs && a.tokens == nil && a.jwks == nil
	var acc []string
	if a.certs {
		acc = append(acc, "a verified client certificate (mutual TLS)")
	}
	switch {
	case a.tokens != nil && a.jwks != nil:
		acc = append(acc, `a bearer token (static token or JWT) in the "authorization" metadata ("Bearer <token>")`)
	case a.tokens != nil:
		acc = append(acc, `a static bearer token in the "authorization" metadata ("Bearer <token>")`)
	case a.jwks != nil:
		acc = append(acc, fmt.Sprintf(`a bearer JWT from issuer %s in the "authorization" metadata ("Bearer <token>")`, clipQuote(a.jwt.Issuer)))
	}
	a.accepted = strings.Join(acc, " or ")
	return a, nil
}

func slicesContainsEmpty(ss []string) bool {
	for _, s := range ss {
		if s == "" {
			return true
		}
	}
	return false
}

// Open reports whether no credential is configured: everyone is the
// anonymous principal.
func (a *Authenticator) Open() bool { return a.open }

// Authenticate tells who is calling from an RPC's context (its peer and
// incoming metadata): the bearer token if the call carries one (a token
// that fails is refused, even if the connection has a good certificate),
// else the verified client certificate, else anonymous if allowed. Errors
// are *AuthError (a gRPC UNAUTHENTICATED status).
//
// It may stat the tokens and JWKS files (at most once per poll interval)
// and re-read them when they changed; it never blocks on anything else.
func (a *Authenticator) Authenticate(ctx context.Context) (Principal, error) {
	if a.open {
		return Anonymous(), nil
	}
	token, present, err := bearer(ctx)
	if err != nil {
		return Principal{}, a.fail(err.Error())
	}
	if present {
		return a.authToken(token)
	}
	if a.certs {
		if p, ok, err := a.authCert(ctx); ok {
			if err != nil {
				return Principal{}, a.fail(err.Error())
			}
			return p, nil
		}
	}
	if a.anonymous {
		return Anonymous(), nil
	}
	return Principal{}, a.fail("no credential presented")
}

func (a *Authenticator) fail(reason string) error {
	return &AuthError{Reason: reason, Accepted: a.accepted}
}

// bearer extracts the token of the call's "authorization" metadata.
func bearer(ctx context.Context) (token string, present bool, err error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vs := md.Get("authorization")
	switch len(vs) {
	case 0:
		return "", false, nil
	case 1:
	default:
		return "", false, errors.New(`more than one "authorization" metadata value`)
	}
	v := vs[0]
	scheme, tok, ok := strings.Cut(v, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", false, errors.New(`the "authorization" metadata must be "Bearer <token>"`)
	}
	tok = strings.TrimLeft(tok, " ")
	switch {
	case tok == "":
		return "", false, errors.New("the bearer token is empty")
	case len(tok) > maxTokenLen:
		return "", false, fmt.Errorf("the bearer token is longer than %d bytes", maxTokenLen)
	}
	return tok, true, nil
}

func (a *Authenticator) authToken(token string) (Principal, error) {
	jwtShaped := looksLikeJWT(token)
	if a.tokens != nil && !jwtShaped {
		_, _ = a.tokens.check(false)
		if len(token) < MinTokenLen {
			return Principal{}, a.fail(fmt.Sprintf("the static token is shorter than %d characters", MinTokenLen))
		}
		if p, ok := a.tokens.get().lookup(token); ok {
			return p, nil
		}
		return Principal{}, a.fail("unknown or revoked static token")
	}
	if a.jwks != nil && jwtShaped {
		_, _ = a.jwks.check(false)
		p, err := verifyJWT(a.jwks.get(), &a.jwt, token, a.now())
		if err != nil {
			return Principal{}, a.fail(err.Error())
		}
		return p, nil
	}
	if jwtShaped {
		return Principal{}, a.fail("the bearer token is a JWT, and this gateway accepts no JWTs")
	}
	return Principal{}, a.fail("the bearer token is not a JWT, and this gateway accepts no static tokens")
}

// Revalidate reports whether a principal authenticated earlier by a static
// token may still use it: the tokens file is re-read when it changed (at
// most once per poll interval) and the token must still be in it, under
// the same name and groups. Other principals are always still valid here
// (a JWT's end is its Expiry; a certificate was checked by the handshake).
// A gateway calls it on open streams, so that revoking a token ends them.
func (a *Authenticator) Revalidate(p Principal) error {
	if p.Method != MethodToken || a.tokens == nil {
		return nil
	}
	_, _ = a.tokens.check(false)
	cur, ok := a.tokens.get().byHash[p.token]
	if !ok {
		return a.fail("the static token was revoked (removed from the tokens file)")
	}
	if cur.Name != p.Name || !slices.Equal(cur.Groups, p.Groups) {
		return a.fail("the static token now names another principal or other groups: reconnect")
	}
	return nil
}

// authCert names the caller after its verified client certificate. ok is
// false when the connection has none.
func (a *Authenticator) authCert(ctx context.Context) (p Principal, ok bool, err error) {
	pr, _ := peer.FromContext(ctx)
	if pr == nil {
		return Principal{}, false, nil
	}
	ti, _ := pr.AuthInfo.(credentials.TLSInfo)
	if len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return Principal{}, false, nil
	}
	name, err := certName(ti.State.VerifiedChains[0][0], a.certNames)
	if err != nil {
		return Principal{}, true, err
	}
	return Principal{Name: name, Method: MethodCertificate}, true, nil
}

// certName is the first name of cert found in order.
func certName(cert *x509.Certificate, order []CertName) (string, error) {
	for _, n := range order {
		var name string
		switch n {
		case CertURI:
			if len(cert.URIs) > 0 {
				name = cert.URIs[0].String()
			}
		case CertDNS:
			if len(cert.DNSNames) > 0 {
				name = cert.DNSNames[0]
			}
		case CertCN:
			name = cert.Subject.CommonName
		}
		if name == "" {
			continue
		}
		if err := validName("client certificate name", name); err != nil {
			return "", err
		}
		return name, nil
	}
	return "", fmt.Errorf("the client certificate has none of the names used to identify callers (%s)", joinNames(order))
}

func joinNames(ns []CertName) string {
	ss := make([]string, len(ns))
	for i, n := range ns {
		ss[i] = map[CertName]string{CertURI: "URI SAN", CertDNS: "DNS SAN", CertCN: "common name"}[n]
	}
	return strings.Join(ss, ", ")
}

// Reload re-reads the tokens and JWKS files now (the gateway's SIGHUP),
// whether or not they look changed. It returns what failed; the previous
// versions of failed files stay in force.
func (a *Authenticator) Reload() error {
	var errs []error
	if a.tokens != nil {
		if _, err := a.tokens.check(true); err != nil {
			errs = append(errs, err)
		}
	}
	if a.jwks != nil {
		if _, err := a.jwks.check(true); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Err reports why a file's current version is not in force (the previous
// one is), or nil when all are: for health checks and metrics.
func (a *Authenticator) Err() error {
	var errs []error
	if a.tokens != nil {
		errs = append(errs, a.tokens.lastErr())
	}
	if a.jwks != nil {
		errs = append(errs, a.jwks.lastErr())
	}
	return errors.Join(errs...)
}
