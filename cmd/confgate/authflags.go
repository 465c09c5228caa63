package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/confgate/confgate/auth"
)

// serverAuth are serve's and dev's flags for who may call the gateway
// (package auth): which credentials identify callers, and the ACL.
type serverAuth struct {
	tokens        string
	jwks          string
	issuer        string
	audiences     []string
	leeway        time.Duration
	subjectPrefix string
	groupsClaim   string
	certNames     []string
	anonymous     bool
	acl           string

	fs *pflag.FlagSet // to tell flags given from defaults
}

func (f *serverAuth) register(fs *pflag.FlagSet) {
	f.fs = fs
	fs.StringVar(&f.tokens, "auth-tokens", "", "file of static bearer tokens callers may present (authorization: Bearer <token>), one `sha256:<hash> <name> [groups]` line each (confgate token new makes them); re-read when it changes and on SIGHUP")
	fs.StringVar(&f.jwks, "auth-jwks", "", "JSON Web Key Set file (e.g. a Kubernetes cluster's /openid/v1/jwks, a SPIFFE bundle's JWT keys) to verify bearer JWTs with; never fetched over the network, re-read when it changes and on SIGHUP; needs --auth-jwt-issuer and --auth-jwt-audience")
	fs.StringVar(&f.issuer, "auth-jwt-issuer", "", "the exact iss JWTs must carry (with --auth-jwks)")
	fs.StringArrayVar(&f.audiences, "auth-jwt-audience", nil, "an aud value JWTs must contain, e.g. confgate (with --auth-jwks); repeat for several, any one matches")
	fs.DurationVar(&f.leeway, "auth-jwt-leeway", auth.DefaultLeeway, "clock skew tolerated on a JWT's exp, nbf and iat (with --auth-jwks), at most 5m; smaller is stricter, too small refuses fresh tokens of issuers whose clock runs ahead")
	fs.StringVar(&f.subjectPrefix, "auth-jwt-subject-prefix", "", "require every JWT's sub to start with this, e.g. spiffe://prod.example.org/ or system:serviceaccount: (with --auth-jwks)")
	fs.StringVar(&f.groupsClaim, "auth-jwt-groups-claim", "", "JWT claim holding the caller's groups, a string or a list (with --auth-jwks); default none")
	fs.StringSliceVar(&f.certNames, "auth-cert-names", certNameStrings(auth.DefaultCertNames), "where a client certificate's principal name comes from, first present wins: uri (first URI SAN, e.g. a SPIFFE ID), dns (first DNS SAN), cn (subject common name); with --tls-client-ca")
	fs.BoolVar(&f.anonymous, "auth-anonymous", false, "let callers that present no credential at all in as the anonymous principal (the ACL says what anonymous may do; a credential that fails is still refused); needs --auth-tokens, --auth-jwks or --tls-client-ca")
	fs.StringVar(&f.acl, "acl", "", "ACL policy file (YAML): which principals and groups may read and write which key prefixes, default deny; without it every caller that authenticates may do everything; re-read when it changes and on SIGHUP, a version that fails to load keeps the previous one")
}

func certNameStrings(ns []auth.CertName) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = string(n)
	}
	return out
}

// given reports whether flag name was set on the command line.
func (f *serverAuth) given(name string) bool {
	if f.fs == nil {
		return false
	}
	fl := f.fs.Lookup(name)
	return fl != nil && fl.Changed
}

// check finds inconsistent flags before any file is read. clientCA is
// whether --tls-client-ca is set.
func (f *serverAuth) check(clientCA bool) error {
	if f.jwks == "" {
		for _, name := range []string{"auth-jwt-issuer", "auth-jwt-audience", "auth-jwt-leeway", "auth-jwt-subject-prefix", "auth-jwt-groups-claim"} {
			if f.given(name) {
				return fmt.Errorf("--%s needs --auth-jwks: the JWKS file whose keys sign the JWTs", name)
			}
		}
	} else {
		switch {
		case f.issuer == "":
			return errors.New("--auth-jwks needs --auth-jwt-issuer: the exact iss the JWTs carry (e.g. https://kubernetes.default.svc.cluster.local)")
		case len(f.audiences) == 0:
			return errors.New("--auth-jwks needs --auth-jwt-audience: a value the JWTs' aud must contain (e.g. confgate), so that tokens meant for other services do not open this one")
		}
		for _, a := range f.audiences {
			if strings.TrimSpace(a) == "" {
				return errors.New("--auth-jwt-audience is empty")
			}
		}
		if f.leeway < 0 || f.leeway > 5*time.Minute {
			return fmt.Errorf("--auth-jwt-leeway %s: want between 0 and 5m", f.leeway)
		}
	}
	if f.given("auth-cert-names") {
		if !clientCA {
			return errors.New("--auth-cert-names needs --tls-client-ca: only client certificates have those names")
		}
		if len(f.certNames) == 0 {
			return errors.New("--auth-cert-names is empty: want some of uri, dns, cn")
		}
		seen := map[string]bool{}
		for _, n := range f.certNames {
			switch n {
			case "uri", "dns", "cn":
			default:
				return fmt.Errorf("--auth-cert-names: %q is not a certificate name: want uri, dns or cn", n)
			}
			if seen[n] {
				return fmt.Errorf("--auth-cert-names: %s is given twice", n)
			}
			seen[n] = true
		}
	}
	if f.anonymous && f.tokens == "" && f.jwks == "" && !clientCA {
		return errors.New("--auth-anonymous needs a credential callers may leave out: --auth-tokens, --auth-jwks or --tls-client-ca (without any, every caller is anonymous already)")
	}
	return nil
}

// credentials reports whether any credential is configured.
func (f *serverAuth) credentials(clientCA bool) bool {
	return clientCA || f.tokens != "" || f.jwks != ""
}

// build makes the Authenticator and PolicyWatcher the flags ask for: nil,
// nil without any auth flag (the gateway is open, as before auth). A file
// missing or invalid at start is an error: a gateway must not start with
// less protection than asked for.
func (f *serverAuth) build(clientCA bool, log *slog.Logger) (*auth.Authenticator, *auth.PolicyWatcher, error) {
	if err := f.check(clientCA); err != nil {
		return nil, nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var a *auth.Authenticator
	if f.credentials(clientCA) {
		cfg := auth.Config{
			ClientCerts: clientCA,
			TokensFile:  f.tokens,
			JWT: auth.JWTConfig{
				JWKSFile:      f.jwks,
				Issuer:        f.issuer,
				Audiences:     f.audiences,
				Leeway:        f.leeway,
				SubjectPrefix: f.subjectPrefix,
				GroupsClaim:   f.groupsClaim,
			},
			Anonymous: f.anonymous,
			Logger:    log,
		}
		if f.jwks == "" {
			cfg.JWT.Leeway = 0
		}
		if clientCA {
			for _, n := range f.certNames {
				cfg.CertNames = append(cfg.CertNames, auth.CertName(n))
			}
		}
		var err error
		if a, err = auth.NewAuthenticator(cfg); err != nil {
			return nil, nil, flagError(f.credentialFlags(clientCA), err)
		}
	}
	var p *auth.PolicyWatcher
	if f.acl != "" {
		var err error
		if p, err = auth.NewPolicyWatcher(auth.PolicyConfig{File: f.acl, Logger: log}); err != nil {
			return nil, nil, flagError("--acl "+f.acl, err)
		}
	}
	return a, p, nil
}

// flagError names the flags behind err unless its message starts with a
// flag name already (auth names the flag when a file cannot be read).
func flagError(flags string, err error) error {
	if strings.HasPrefix(err.Error(), "--") {
		return err
	}
	return fmt.Errorf("%s: %w", flags, err)
}

// credentialFlags names the credential flags given, for errors.
func (f *serverAuth) credentialFlags(clientCA bool) string {
	var fl []string
	if f.tokens != "" {
		fl = append(fl, "--auth-tokens "+f.tokens)
	}
	if f.jwks != "" {
		fl = append(fl, "--auth-jwks "+f.jwks)
	}
	if clientCA && len(fl) == 0 {
		fl = append(fl, "--auth-cert-names")
	}
	return strings.Join(fl, ", ")
}

// optionalClientCerts makes client certificates optional in a TLS config
// that requires them, when callers may also authenticate otherwise (a
// bearer token) or not at all (--auth-anonymous): a certificate presented
// must still verify against --tls-client-ca, and a caller without one must
// satisfy the Authenticator instead.
func (f *serverAuth) optionalClientCerts(cfg *tls.Config) {
	if cfg != nil && cfg.ClientAuth == tls.RequireAndVerifyClientCert && (f.tokens != "" || f.jwks != "" || f.anonymous) {
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
}

// warnings are the start-up warnings about what the flags leave open.
func (f *serverAuth) warnings(log *slog.Logger, a *auth.Authenticator, p *auth.PolicyWatcher, tlsOn bool, listen string) {
	if a != nil && p == nil {
		log.Warn("callers are authenticated but there is no --acl: every caller that authenticates may read and write every key")
	}
	if (f.tokens != "" || f.jwks != "") && !tlsOn && !loopbackHost(listen) {
		log.Warn("bearer tokens are accepted over plaintext gRPC: anyone who can read the traffic can replay them; serve TLS (--tls-cert, --tls-key)", "listen", listen)
	}
}

// authReload re-reads the auth files on SIGHUP and says how it went.
func authReload(log *slog.Logger, a *auth.Authenticator, p *auth.PolicyWatcher) func() {
	return func() {
		var errs []error
		var what []string
		if a != nil {
			what = append(what, "credentials (--auth-tokens, --auth-jwks)")
			errs = append(errs, a.Reload())
		}
		if p != nil {
			what = append(what, "ACL (--acl)")
			errs = append(errs, p.Reload())
		}
		if err := errors.Join(errs...); err != nil {
			log.Error("SIGHUP: reload failed, the previous versions of the files that failed stay in force; still serving", "reloaded", strings.Join(what, ", "), "err", err)
			return
		}
		log.Info("SIGHUP: reloaded, still serving", "reloaded", strings.Join(what, ", "))
	}
}

// loopbackHost reports whether a host:port is on the loopback interface.
func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
