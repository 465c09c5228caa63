package auth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// JWTConfig says which JWTs are accepted. Issuer and Audiences are
// required: a JWKS alone says who may sign, not for whom the token is
// meant, and a token meant for another service must not open this one.
type JWTConfig struct {
	// JWKSFile is the JSON Web Key Set (RFC 7517) holding the issuer's
	// public keys, e.g. a Kubernetes cluster's /openid/v1/jwks or a SPIFFE
	// trust bundle's JWT keys. auth never fetches keys over the network:
	// whatever keeps this file current (a sidecar, a CronJob, a ConfigMap)
	// is outside the gateway. Re-read when it changes. Empty: no JWTs.
	JWKSFile string
	// Issuer is the exact "iss" a token must carry, e.g.
	// "https://kubernetes.default.svc.cluster.local" or the issuer SPIRE is
	// configured with (jwt_issuer).
	Issuer string
	// Audiences: a token's "aud" must contain one of them, e.g.
	// "confgate".
	Audiences []string
	// Leeway is the clock skew tolerated on exp, nbf and iat. Default
	// 30s; at most 5m (more would keep expired tokens alive). Smaller is
	// stricter; too small refuses fresh tokens from issuers whose clock is
	// a little ahead.
	Leeway time.Duration
	// SubjectPrefix, if set, is required of every "sub", e.g.
	// "spiffe://prod.example.org/" or "system:serviceaccount:": a key of
	// the set cannot then mint principals outside that namespace.
	SubjectPrefix string
	// GroupsClaim, if set, names a claim holding a string or a list of
	// strings that become the principal's groups (e.g. "groups"). Empty:
	// JWT principals have no groups.
	GroupsClaim string
}

// DefaultLeeway is JWTConfig.Leeway's default.
const DefaultLeeway = 30 * time.Second

const maxLeeway = 5 * time.Minute

// jwtAlgorithms are the signature algorithms accepted: asymmetric only.
// "none" and the HMAC family are never accepted (with a JWKS of public
// keys, HMAC would let anyone who knows a public key sign).
var jwtAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

// keySet is a parsed JWKS: signature verification keys only.
type keySet struct {
	keys []jose.JSONWebKey
}

// parseJWKS parses a JWK Set. Keys marked for encryption ("use": "enc") are
// skipped; any other key must be a valid public signature key (a private
// or symmetric key in the file is refused: the file is meant to be
// readable, and a private key in it is a leak to fix, not to use).
func parseJWKS(b []byte) (*keySet, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("JWKS: not a JSON Web Key Set: %w", err)
	}
	if raw.Keys == nil {
		return nil, errors.New(`JWKS: no "keys" array`)
	}
	set := &keySet{}
	for i, r := range raw.Keys {
		var hdr struct {
			Use string `json:"use"`
			Kid string `json:"kid"`
		}
		if err := json.Unmarshal(r, &hdr); err != nil {
			return nil, fmt.Errorf("JWKS key %d: %w", i, err)
		}
		if hdr.Use == "enc" {
			continue
		}
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil {
			return nil, fmt.Errorf("JWKS key %d (kid %q): %w", i, hdr.Kid, err)
		}
		if k.Key != nil && !k.IsPublic() {
			return nil, fmt.Errorf("JWKS key %d (kid %q): not a public key (private and symmetric keys do not belong in the JWKS file)", i, k.KeyID)
		}
		if !k.Valid() {
			return nil, fmt.Errorf("JWKS key %d (kid %q): incomplete key", i, k.KeyID)
		}
		if k.Use != "" && k.Use != "sig" {
			return nil, fmt.Errorf("JWKS key %d (kid %q): unknown use %q", i, k.KeyID, k.Use)
		}
		set.keys = append(set.keys, k)
	}
	return set, nil
}

// key finds the key for a token's header: by kid, or the only key when
// the token names none.
func (s *keySet) key(h jose.Header) (*jose.JSONWebKey, error) {
	var found *jose.JSONWebKey
	for i := range s.keys {
		k := &s.keys[i]
		if h.KeyID != "" && k.KeyID != h.KeyID {
			continue
		}
		if k.Algorithm != "" && k.Algorithm != h.Algorithm {
			continue
		}
		if found != nil {
			if h.KeyID == "" {
				return nil, errors.New("the JWT names no key (kid) and the JWKS has several")
			}
			return nil, fmt.Errorf("the JWKS has several keys with kid %q for %s", h.KeyID, h.Algorithm)
		}
		found = k
	}
	if found == nil {
		if h.KeyID == "" {
			return nil, errors.New("the JWT names no key (kid) and no key of the JWKS fits it")
		}
		return nil, fmt.Errorf("the JWT is signed with key %q, which is not in the JWKS (for %s)", clipID(h.KeyID), h.Algorithm)
	}
	return found, nil
}

// verifyJWT checks token's signature against set and its claims against
// cfg at now, and returns its principal.
func verifyJWT(set *keySet, cfg *JWTConfig, token string, now time.Time) (Principal, error) {
	tok, err := jwt.ParseSigned(token, jwtAlgorithms)
	if err != nil {
		if alg := unverifiedAlg(token); alg != "" && !algAccepted(alg) {
			return Principal{}, fmt.Errorf("the JWT's algorithm %q is not accepted (accepted: RS*, PS*, ES*, EdDSA)", clipID(alg))
		}
		return Principal{}, fmt.Errorf("the bearer token is not a valid signed JWT: %w", err)
	}
	if len(tok.Headers) != 1 {
		return Principal{}, errors.New("the JWT must have exactly one signature")
	}
	key, err := set.key(tok.Headers[0])
	if err != nil {
		return Principal{}, err
	}
	var claims jwt.Claims
	var extra map[string]any
	dest := []any{&claims}
	if cfg.GroupsClaim != "" {
		dest = append(dest, &extra)
	}
	if err := tok.Claims(key.Key, dest...); err != nil {
		return Principal{}, fmt.Errorf("the JWT's signature or claims are invalid: %w", err)
	}
	if claims.Expiry == nil {
		return Principal{}, errors.New("the JWT has no expiry (exp)")
	}
	err = claims.ValidateWithLeeway(jwt.Expected{Issuer: cfg.Issuer, AnyAudience: cfg.Audiences, Time: now}, cfg.Leeway)
	switch {
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return Principal{}, fmt.Errorf("the JWT's issuer %s is not the accepted issuer %s", clipQuote(claims.Issuer), clipQuote(cfg.Issuer))
	case errors.Is(err, jwt.ErrInvalidAudience):
		return Principal{}, fmt.Errorf("the JWT's audience is not one of %q", cfg.Audiences)
	case errors.Is(err, jwt.ErrExpired):
		return Principal{}, fmt.Errorf("the JWT expired at %s", claims.Expiry.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrNotValidYet):
		return Principal{}, fmt.Errorf("the JWT is not valid before %s", claims.NotBefore.Time().UTC().Format(time.RFC3339))
	case errors.Is(err, jwt.ErrIssuedInTheFuture):
		return Principal{}, errors.New("the JWT was issued in the future (iat): check the clocks")
	case err != nil:
		return Principal{}, fmt.Errorf("the JWT's claims are invalid: %w", err)
	}
	if err := validName("JWT subject (sub)", claims.Subject); err != nil {
		return Principal{}, err
	}
	if cfg.SubjectPrefix != "" && !strings.HasPrefix(claims.Subject, cfg.SubjectPrefix) {
		return Principal{}, fmt.Errorf("the JWT's subject %s does not start with %s", clipQuote(claims.Subject), clipQuote(cfg.SubjectPrefix))
	}
	p := Principal{Name: claims.Subject, Method: MethodJWT, Expiry: claims.Expiry.Time().Add(cfg.Leeway)}
	if cfg.GroupsClaim != "" {
		gs, err := groupsClaim(extra[cfg.GroupsClaim])
		if err != nil {
			return Principal{}, fmt.Errorf("the JWT's %q claim: %w", cfg.GroupsClaim, err)
		}
		p.Groups = gs
	}
	return p, nil
}

func groupsClaim(v any) ([]string, error) {
	var gs []string
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		gs = []string{v}
	case []any:
		if len(v) > 256 {
			return nil, fmt.Errorf("%d groups, more than the limit 256", len(v))
		}
		for _, g := range v {
			s, ok := g.(string)
			if !ok {
				return nil, errors.New("not a list of strings")
			}
			gs = append(gs, s)
		}
	default:
		return nil, errors.New("not a string or a list of strings")
	}
	for _, g := range gs {
		if err := validName("group", g); err != nil {
			return nil, err
		}
	}
	return normGroups(gs), nil
}

// unverifiedAlg is the alg of a compact JWS's header, for a better message
// when parsing refused it (alg "none", HS256).
func unverifiedAlg(token string) string {
	h, _, ok := strings.Cut(token, ".")
	if !ok || len(h) > 4096 {
		return ""
	}
	b, err := decodeSegment(h)
	if err != nil {
		return ""
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(b, &hdr) != nil {
		return ""
	}
	return hdr.Alg
}

func algAccepted(alg string) bool {
	for _, a := range jwtAlgorithms {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// clipID shortens an identifier taken from a token for a message.
func clipID(s string) string {
	if len(s) > 64 {
		s = s[:64]
	}
	return strings.ToValidUTF8(s, "?")
}

// looksLikeJWT: a compact JWS has three dot-separated parts. Static
// tokens never contain a dot (NewToken's alphabet has none).
func looksLikeJWT(token string) bool { return strings.Count(token, ".") == 2 }

func decodeSegment(s string) ([]byte, error) {
	return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
}
