package auth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Static bearer tokens.
//
// The tokens file stores SHA-256 hashes of tokens, never tokens, so that
// reading the file (a backup, a ConfigMap dump, a support bundle) does not
// let anyone call the gateway. A plain, fast hash is sound here because the
// tokens are random and long (NewToken makes 256-bit ones; the gateway
// refuses tokens shorter than MinTokenLen): nobody can search 2^128 or more
// candidates for a preimage, so the slowness of password hashes (bcrypt,
// argon2) buys nothing, while it would cost every RPC milliseconds of CPU
// and hand an attacker a cheap way to burn gateway CPU. A fast hash also
// lets the gateway find a token by its hash in a map: no per-entry
// comparison whose timing could leak anything about a stored token.
//
// Format, one token a line:
//
//	# comment; blank lines are ignored
//	sha256:<64 lowercase hex digits>  <principal name>  [<group>,<group>...]
//
// Fields are separated by spaces or tabs, so principal and group names
// cannot contain whitespace. A hash may appear once; a principal may have
// several tokens (rotation: add the new one, roll out, remove the old one).

// MinTokenLen is the shortest bearer token accepted: 32 characters, which
// holds 128 bits of randomness even as hex.
const MinTokenLen = 32

// maxTokenLen bounds what the gateway hashes or parses per call.
const maxTokenLen = 16 << 10

const tokenHashPrefix = "sha256:"

// NewToken returns a new random static token (256 bits, URL-safe base64,
// with a "cgt_" prefix that secret scanners can recognise) and the line
// hash to put in the tokens file for it.
func NewToken() (token, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", err
	}
	token = "cgt_" + base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashToken(token), nil
}

// HashToken is how the tokens file spells token: "sha256:" and the
// lowercase hex SHA-256 of the token's bytes (as sent, after "Bearer ").
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return tokenHashPrefix + hex.EncodeToString(sum[:])
}

// tokenSet is a parsed tokens file: hash -> principal.
type tokenSet struct {
	byHash map[[sha256.Size]byte]Principal
}

func (s *tokenSet) lookup(token string) (Principal, bool) {
	h := sha256.Sum256([]byte(token))
	p, ok := s.byHash[h]
	p.token = h
	return p, ok
}

// parseTokens parses a tokens file (see the format above).
func parseTokens(b []byte) (*tokenSet, error) {
	if !utf8.Valid(b) {
		return nil, fmt.Errorf("tokens file is not valid UTF-8")
	}
	set := &tokenSet{byHash: make(map[[sha256.Size]byte]Principal)}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), MaxTokensFileSize+1)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.FieldsFunc(text, func(r rune) bool { return r == ' ' || r == '\t' })
		if len(fields) < 2 || len(fields) > 3 {
			return nil, fmt.Errorf("tokens file line %d: want \"sha256:<hex> <principal> [<group>,...]\", got %d fields", line, len(fields))
		}
		h, ok := strings.CutPrefix(fields[0], tokenHashPrefix)
		if !ok {
			return nil, fmt.Errorf("tokens file line %d: the hash must start with %q (the file holds hashes of tokens, never tokens: see HashToken)", line, tokenHashPrefix)
		}
		if len(h) != 2*sha256.Size || strings.ToLower(h) != h {
			return nil, fmt.Errorf("tokens file line %d: the hash must be 64 lowercase hex digits", line)
		}
		var sum [sha256.Size]byte
		if _, err := hex.Decode(sum[:], []byte(h)); err != nil {
			return nil, fmt.Errorf("tokens file line %d: the hash must be 64 lowercase hex digits", line)
		}
		if _, dup := set.byHash[sum]; dup {
			return nil, fmt.Errorf("tokens file line %d: the hash appears twice", line)
		}
		if err := validName("principal", fields[1]); err != nil {
			return nil, fmt.Errorf("tokens file line %d: %w", line, err)
		}
		p := Principal{Name: fields[1], Method: MethodToken}
		if len(fields) == 3 {
			gs := strings.Split(fields[2], ",")
			for _, g := range gs {
				if err := validName("group", g); err != nil {
					return nil, fmt.Errorf("tokens file line %d: %w", line, err)
				}
			}
			p.Groups = normGroups(gs)
		}
		set.byHash[sum] = p
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("tokens file: %w", err)
	}
	return set, nil
}
