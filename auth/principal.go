package auth

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/confgate/confgate/internal/keyspace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Method says how a principal proved who it is.
type Method string

const (
	// MethodAnonymous: no credential was presented (or none is configured).
	MethodAnonymous Method = "anonymous"
	// MethodCertificate: a client certificate verified by the TLS handshake.
	MethodCertificate Method = "certificate"
	// MethodToken: a static bearer token from the tokens file.
	MethodToken Method = "token"
	// MethodJWT: a JWT verified against the JWKS file.
	MethodJWT Method = "jwt"
)

// Principal is who is calling. It is a value: copy it freely.
type Principal struct {
	// Name identifies the caller: a SPIFFE ID, a DNS name, a certificate
	// CN, the name the tokens file gives a token, or a JWT's sub. Empty
	// for the anonymous principal, and only for it.
	Name string
	// Groups the caller belongs to (tokens file, JWT groups claim), sorted
	// and without duplicates; shared, do not modify. ACL rules can grant
	// to groups.
	Groups []string
	// Method is how the caller authenticated.
	Method Method
	// Expiry is when Authenticate stops accepting the credential (a JWT's
	// exp plus the clock-skew leeway); zero when it does not expire
	// (certificates are checked by the TLS handshake, static tokens last
	// until removed from the file). A gateway should end a stream opened
	// with it by then.
	Expiry time.Time

	// token is the hash of the static token the caller showed, so that
	// Revalidate can tell whether it was revoked since; zero otherwise.
	token [sha256.Size]byte
}

// Anonymous is the principal of a caller without credentials.
func Anonymous() Principal { return Principal{Method: MethodAnonymous} }

// IsAnonymous reports whether p is the anonymous principal.
func (p Principal) IsAnonymous() bool { return p.Name == "" }

// Expired reports whether p's credential has expired at now.
func (p Principal) Expired(now time.Time) bool {
	return !p.Expiry.IsZero() && !now.Before(p.Expiry)
}

// InGroup reports whether p belongs to group g.
func (p Principal) InGroup(g string) bool {
	_, found := slices.BinarySearch(p.Groups, g)
	return found
}

// String is a readable form for logs and messages, quoted so that a name
// cannot act on a terminal or forge a log line.
func (p Principal) String() string {
	if p.IsAnonymous() {
		return "anonymous"
	}
	return fmt.Sprintf("%s (%s)", keyspace.Quote(p.Name), p.Method)
}

// normGroups sorts groups and drops duplicates and empty names.
func normGroups(gs []string) []string {
	if len(gs) == 0 {
		return nil
	}
	out := slices.Clone(gs)
	out = slices.DeleteFunc(out, func(g string) bool { return g == "" })
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) == 0 {
		return nil
	}
	return out
}

// AuthError is why a caller could not be authenticated. Its message says
// what went wrong and which credentials the gateway accepts; it is a gRPC
// UNAUTHENTICATED status (status.FromError and status.Code see it), so a
// handler can return it as is. It never contains a token.
type AuthError struct {
	Reason   string // what went wrong, e.g. "the JWT has expired"
	Accepted string // e.g. "a client certificate or a bearer token (static token or JWT)"
}

func (e *AuthError) Error() string {
	if e.Accepted == "" {
		return "unauthenticated: " + e.Reason
	}
	return "unauthenticated: " + e.Reason + "; this gateway accepts " + e.Accepted
}

// GRPCStatus makes the error an UNAUTHENTICATED status.
func (e *AuthError) GRPCStatus() *status.Status {
	return status.New(codes.Unauthenticated, e.Error())
}

// Op is what a principal tried to do.
type Op string

const (
	OpRead  Op = "read"
	OpWrite Op = "write"
)

// DeniedError is a refusal by the policy. It names the principal, the
// operation and the first selector prefix or key no grant covers; it is a
// gRPC PERMISSION_DENIED status, so a handler can return it as is.
type DeniedError struct {
	Principal Principal
	Op        Op
	// Prefix is the refused selector prefix ("" for "every key") when
	// IsKey is false, else the refused key.
	Prefix string
	IsKey  bool
}

func (e *DeniedError) Error() string {
	var what string
	switch {
	case e.IsKey:
		what = "key " + clipQuote(e.Prefix)
	case e.Prefix == "":
		what = "every key (the empty selector)"
	default:
		what = "selector prefix " + clipQuote(e.Prefix)
	}
	return fmt.Sprintf("permission denied: %s may not %s %s: no %s grant of the ACL covers it", e.Principal, e.Op, what, e.Op)
}

// GRPCStatus makes the error a PERMISSION_DENIED status.
func (e *DeniedError) GRPCStatus() *status.Status {
	return status.New(codes.PermissionDenied, e.Error())
}

// clipQuote quotes s for a message, cut to 128 bytes at a character
// boundary.
func clipQuote(s string) string {
	if len(s) <= 128 {
		return keyspace.Quote(s)
	}
	n := 128
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return keyspace.Quote(s[:n]) + "..."
}

// validName reports why s cannot be a principal or group name: names are
// one line of visible text, at most 1024 bytes.
func validName(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s is empty", what)
	case len(s) > 1024:
		return fmt.Errorf("%s %s is %d bytes, longer than the limit 1024", what, clipQuote(s), len(s))
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %s is not valid UTF-8", what, clipQuote(s))
	}
	for i, r := range s {
		if keyspace.Hidden(r) {
			return fmt.Errorf("%s %s has control or invisible character %U at byte %d", what, clipQuote(s), r, i)
		}
	}
	return nil
}
