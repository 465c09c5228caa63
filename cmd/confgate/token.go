package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/credentials"

	"github.com/confgate/confgate/auth"
	"github.com/confgate/confgate/client"
	"github.com/confgate/confgate/internal/keyspace"
)

// Environment variables the client verbs read a bearer token from when no
// flag names one.
const (
	tokenEnv     = "CONFGATE_TOKEN"
	tokenFileEnv = "CONFGATE_TOKEN_FILE"
)

// clientToken are the client verbs' bearer token flags.
type clientToken struct {
	token    string
	file     string
	insecure bool
}

func (f *clientToken) register(fs *pflag.FlagSet) {
	fs.StringVar(&f.token, "token", "", "bearer token to authenticate with (sent as authorization: Bearer <token>); visible in ps and shell history, prefer --token-file or env "+tokenEnv)
	fs.StringVar(&f.file, "token-file", "", "file holding the bearer token, re-read when it changes (rotated Kubernetes or SPIFFE tokens); env "+tokenFileEnv)
	fs.BoolVar(&f.insecure, "insecure-token", false, "send the token even over plaintext to an address that is not loopback; by default a token only travels over --tls, or in plaintext to 127.0.0.1, ::1 or localhost")
}

// source says where the token comes from, for messages (never the token).
func (f *clientToken) source() string {
	switch {
	case f.file != "":
		return "the token file " + f.file
	case f.token != "":
		return "the token given"
	}
	return ""
}

// resolve picks the token: flags first, then the environment. It reports
// a conflict as an error.
func (f *clientToken) resolve(getenv func(string) string) error {
	if f.token != "" && f.file != "" {
		return errors.New("--token and --token-file exclude each other: give one")
	}
	if f.token != "" || f.file != "" {
		return nil
	}
	tok, file := getenv(tokenEnv), getenv(tokenFileEnv)
	if tok != "" && file != "" {
		return fmt.Errorf("%s and %s are both set: unset one (or give --token or --token-file)", tokenEnv, tokenFileEnv)
	}
	f.token, f.file = tok, file
	return nil
}

// credentials are the per-RPC credentials carrying the token to every
// address of addrs, or nil without a token. Without TLS, a token is only
// sent to loopback addresses, unless --insecure-token.
func (f *clientToken) credentials(addrs []string, tlsOn bool) (credentials.PerRPCCredentials, error) {
	if f.token == "" && f.file == "" {
		return nil, nil
	}
	local := true
	for _, a := range addrs {
		if !loopbackHost(a) {
			local = false
			if !tlsOn && !f.insecure {
				return nil, fmt.Errorf("refusing to send the bearer token in plaintext to %s, where anyone on the path could read and replay it: connect with --tls (and --tls-ca when the gateway's CA is not a system one), or add --insecure-token on a network you trust", a)
			}
		}
	}
	creds, err := client.TokenCredentials(f.token, f.file, !(local || f.insecure))
	if err != nil {
		if f.file != "" {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		return nil, fmt.Errorf("--token: %w", err)
	}
	return creds, nil
}

// clientVerbs are the verbs that call a gateway, and so send a token.
var clientVerbs = map[string]bool{"get": true, "put": true, "delete": true, "watch": true, "snapshot": true,
	"apply": true, "validate": true, "diff": true, "rollback": true, "fleet": true}

func newTokenCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make static bearer tokens for gateways run with --auth-tokens",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usagef(cmd, "want a subcommand: confgate token new")
		},
	}
	var name string
	var groups []string
	newCmd := &cobra.Command{
		Use:   "new [--name NAME] [--groups GROUP,...]",
		Short: "Print a new random token and the line that lets it in",
		Long: `Print a new random static bearer token (256 bits, "cgt_" prefix) and the
line to add to the gateways' --auth-tokens file for it. The token is shown
once, here: the file stores only its SHA-256 hash, from which the token
cannot be recovered. Give the token to the caller (a secret store, a
Kubernetes Secret mounted as the client's token file); add the line to the
tokens file on every gateway, which re-reads it by itself. To rotate, add
a new token for the same name, roll it out, then delete the old line.

--name is the principal the ACL (--acl) grants to; --groups are groups it
belongs to. Nothing is sent anywhere: this runs offline.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("name") {
				if err := checkPrincipalName("--name", name); err != nil {
					return usagef(cmd, "%v", err)
				}
			}
			for _, gr := range groups {
				if err := checkPrincipalName("--groups", gr); err != nil {
					return usagef(cmd, "%v", err)
				}
			}
			tok, hash, err := auth.NewToken()
			if err != nil {
				return fmt.Errorf("make a token: %w", err)
			}
			if name == "" {
				// A name of its own, from the hash (never the token).
				name = "token-" + strings.TrimPrefix(hash, "sha256:")[:12]
			}
			line := hash + " " + name
			if len(groups) > 0 {
				line += " " + strings.Join(groups, ",")
			}
			p := newPrinter(g.env.Stdout)
			if g.json() {
				return p.JSON(struct {
					Token  string   `json:"token"`
					Hash   string   `json:"hash"`
					Name   string   `json:"name"`
					Groups []string `json:"groups,omitempty"`
					Line   string   `json:"tokens_file_line"`
				}{tok, hash, name, groups, line})
			}
			return p.Raw([]byte(fmt.Sprintf(`token (shown once: store it now; the tokens file keeps only its hash):
  %s

line for the gateways' --auth-tokens file:
  %s

callers send it with --token-file FILE, %s, or the client libraries' token options.
`, tok, line, tokenEnv)))
		},
	}
	f := newCmd.Flags()
	f.StringVar(&name, "name", "", "principal name of the token, as the ACL grants to it: one word, e.g. team-payments or ci-deployer (default: token- and the start of the token's hash)")
	f.StringSliceVar(&groups, "groups", nil, "groups of the principal, comma-separated, as the ACL grants to them")
	cmd.AddCommand(newCmd)
	return cmd
}

// checkPrincipalName says why s cannot be a name or group in the tokens
// file: one word of visible characters, no comma (groups are
// comma-separated), at most 1024 bytes.
func checkPrincipalName(flag, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", flag)
	}
	if len(s) > 1024 {
		return fmt.Errorf("%s is %d bytes, longer than 1024", flag, len(s))
	}
	if strings.HasPrefix(s, "#") {
		return fmt.Errorf("%s %s starts with #, which the tokens file reads as a comment", flag, keyspace.Quote(s))
	}
	for _, r := range s {
		if r == ' ' || r == '\t' || r == ',' || r == '\uFFFD' || keyspace.Hidden(r) || r < ' ' || r == 0x7f {
			return fmt.Errorf("%s %s: names are one word of visible characters, without spaces or commas", flag, keyspace.Quote(s))
		}
	}
	return nil
}
