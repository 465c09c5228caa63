package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"google.golang.org/grpc/credentials"

	"github.com/confgate/confgate/internal/keyspace"
	"github.com/spf13/cobra"
)

// Exit statuses. Scripts can tell a missing key from a failure.
const (
	exitOK       = 0
	exitNotFound = 1 // get: the key does not exist
	exitFailure  = 2 // anything else: bad usage, unreachable gateway, refused request
)

// defaultAddr is where `confgate dev` listens and the verbs connect.
const defaultAddr = "127.0.0.1:50051"

// addrEnv overrides the default of --addr.
const addrEnv = "CONFGATE_ADDR"

// Env is what one run of the command talks to.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Getenv reads the environment (os.Getenv in the binary).
	Getenv func(string) string
	// Started, when set, is called once a `serve` or `dev` node is ready,
	// with the addresses it bound: tests start nodes on port 0 and learn
	// the ports here.
	Started func(Addrs)

	// reload, when set, is what SIGHUP does to a running serve: re-read
	// the auth files. Set by serve once they are loaded.
	reload atomic.Pointer[func()]
}

// Addrs are the addresses a running node bound.
type Addrs struct {
	// GRPC is the gateway's gRPC address, host:port.
	GRPC string
	// Admin is the admin HTTP address; empty when disabled.
	Admin string
	// Kafka are the brokers the node consumes (dev: the embedded broker).
	Kafka []string
	// Topic is the config topic.
	Topic string
}

// codeError carries an exit status other than exitFailure.
type codeError struct {
	code int
	err  error
}

func (e *codeError) Error() string { return e.err.Error() }
func (e *codeError) Unwrap() error { return e.err }

// usageError marks a command-line mistake.
type usageError struct{ err error }

func (e *usageError) Error() string { return e.err.Error() }
func (e *usageError) Unwrap() error { return e.err }

func usagef(cmd *cobra.Command, format string, args ...any) error {
	return &usageError{fmt.Errorf("%s (see '%s --help')", fmt.Sprintf(format, args...), cmd.CommandPath())}
}

// run executes one command line and returns the exit status. Errors are
// printed here, once, as a single line on stderr.
func run(ctx context.Context, args []string, env *Env) int {
	root := newRootCmd(env)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(env.Stderr, "confgate: %s\n", oneLine(err.Error()))
	var ce *codeError
	if errors.As(err, &ce) {
		return ce.code
	}
	return exitFailure
}

// oneLine folds a message onto one line and escapes what could act on a
// terminal: errors carry gateway status messages, which a hostile gateway
// could fill with escape sequences or bidi controls.
func oneLine(s string) string {
	s = strings.ToValidUTF8(strings.Join(strings.Fields(s), " "), "\uFFFD")
	var b strings.Builder
	for _, r := range s {
		if unicode.IsControl(r) || keyspace.Hidden(r) {
			fmt.Fprintf(&b, "\\u%04x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// globals are the persistent flags every verb shares.
type globals struct {
	env      *Env
	addr     string
	output   string
	timeout  time.Duration
	logLevel string
	log      *slog.Logger
	tls      clientTLS
	creds    credentials.TransportCredentials // from tls, set by setup
	token    clientToken
	perRPC   credentials.PerRPCCredentials // the token, set by setup; nil without one
}

func (g *globals) json() bool { return g.output == "json" }

func newRootCmd(env *Env) *cobra.Command {
	if env.Getenv == nil {
		env.Getenv = func(string) string { return "" }
	}
	g := &globals{env: env}
	root := &cobra.Command{
		Use:   "confgate",
		Short: "Configuration distribution: Kafka holds the truth, gateways stream it",
		Long: `confgate distributes configuration entries held in a compacted Kafka topic.
Gateways consume the whole topic and serve it over gRPC as a snapshot followed
by versioned changes.

Start here:
  confgate dev                          # a gateway with an embedded broker and sample data
  confgate get payments/db/timeout      # in another terminal
  confgate watch payments/
  confgate put payments/db/timeout 7s

Authentication: gateways that require it take a client certificate
(--tls-cert, --tls-key) or a bearer token (--token-file, --token, or env
CONFGATE_TOKEN / CONFGATE_TOKEN_FILE), sent on every call. A token only
travels over TLS, or in plaintext to a loopback address.

Exit status: 0 on success, 1 when get finds no such key, 2 on any other error
(UNAUTHENTICATED and PERMISSION_DENIED refusals included).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.setup(cmd)
		},
	}
	root.SetIn(env.Stdin)
	root.SetOut(env.Stdout)
	root.SetErr(env.Stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usagef(cmd, "%v", err)
	})

	addrDefault := defaultAddr
	if v := env.Getenv(addrEnv); v != "" {
		addrDefault = v
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.addr, "addr", addrDefault,
		"gateway address host:port, or a comma-separated list: unary calls use the first reachable one, watch moves to the next on failure (env "+addrEnv+")")
	pf.StringVarP(&g.output, "output", "o", "text", "output format: text (for people) or json (one JSON object per line, for scripts)")
	pf.DurationVar(&g.timeout, "timeout", 10*time.Second, "bound on a get, put, delete or snapshot, connection included; 0 waits forever (watch only bounds each connection attempt by it)")
	g.tls.register(pf)
	g.token.register(pf)
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn or error (serve and dev log to stderr, as JSON with -o json)")

	root.AddCommand(
		newServeCmd(g),
		newDevCmd(g),
		newGetCmd(g),
		newPutCmd(g),
		newDeleteCmd(g),
		newApplyCmd(g),
		newValidateCmd(g),
		newDiffCmd(g),
		newFleetCmd(g),
		newRollbackCmd(g),
		newSnapshotCmd(g),
		newWatchCmd(g),
		newTokenCmd(g),
		newBenchCmd(g),
		newVersionCmd(g),
	)
	return root
}

// setup validates the global flags and builds the logger.
func (g *globals) setup(cmd *cobra.Command) error {
	switch g.output {
	case "text", "json":
	default:
		return usagef(cmd, "--output %q: want text or json", g.output)
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
		return usagef(cmd, "--log-level %q: want debug, info, warn or error", g.logLevel)
	}
	if g.timeout < 0 {
		return usagef(cmd, "--timeout must not be negative")
	}
	creds, err := g.tls.credentials()
	if err != nil {
		return usagef(cmd, "%v", err)
	}
	g.creds = creds
	if clientVerbs[cmd.Name()] {
		if err := g.token.resolve(g.env.Getenv); err != nil {
			return usagef(cmd, "%v", err)
		}
		if g.token.token != "" || g.token.file != "" {
			addrs, err := g.addrList()
			if err != nil {
				return err
			}
			tlsOn := creds.Info().SecurityProtocol != "insecure"
			if g.perRPC, err = g.token.credentials(addrs, tlsOn); err != nil {
				return usagef(cmd, "%v", err)
			}
		}
	}
	opts := &slog.HandlerOptions{Level: level}
	if g.json() {
		g.log = slog.New(slog.NewJSONHandler(g.env.Stderr, opts))
	} else {
		g.log = slog.New(slog.NewTextHandler(g.env.Stderr, opts))
	}
	return nil
}

// callContext bounds one unary call or snapshot by --timeout.
func (g *globals) callContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if g.timeout == 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, g.timeout)
}

// maxArgs is cobra.MaximumNArgs with a usage line in the error.
func maxArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) > n {
			return usagef(cmd, "want at most %d argument(s), got %d: usage: %s", n, len(args), cmd.UseLine())
		}
		return nil
	}
}

// exactArgs is cobra.ExactArgs with a usage line in the error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef(cmd, "want %d argument(s), got %d: usage: %s", n, len(args), cmd.UseLine())
		}
		return nil
	}
}
