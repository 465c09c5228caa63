package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// How the binary answers signals:
//
//   - SIGINT, SIGTERM: every verb stops; serve and dev drain first (health
//     NOT_SERVING, streams told to resume elsewhere). A second one kills at
//     once.
//   - SIGHUP to serve: reload. The auth files (--auth-tokens, --auth-jwks,
//     --acl) are re-read at once, whatever their modification times say,
//     and the outcome is logged (a file that fails keeps its previous
//     version in force). They are also re-read by themselves when they
//     change, as are the TLS certificate and key; every other setting
//     takes a restart. Without auth files there is nothing to reload: the
//     gateway logs that. Either way it keeps serving: killing it instead
//     (the default action, what happened before) would cut every stream
//     of a fleet on a routine `systemctl reload` or a logrotate
//     postrotate script.
//   - SIGHUP to dev: drain and exit like SIGTERM. dev runs in a terminal,
//     and a hangup means that terminal is gone; a demo gateway left running
//     would keep its ports. Under nohup (SIGHUP ignored at start) it stays
//     ignored.
//   - SIGHUP to the CLI verbs (get, put, watch, ...): the default action,
//     they end with their terminal.

// stopSignals are the signals that stop a process running verb.
func stopSignals(verb string) []os.Signal {
	sigs := []os.Signal{os.Interrupt, syscall.SIGTERM}
	if verb == "dev" && !signal.Ignored(syscall.SIGHUP) {
		sigs = append(sigs, syscall.SIGHUP)
	}
	return sigs
}

// handleSignals returns a context that ends on the signals that stop verb,
// and for serve answers SIGHUP with env's reload (or a log line when there
// is none) and keeps going. stop releases the signals.
func handleSignals(verb string, log *slog.Logger, env *Env) (ctx context.Context, stop func()) {
	ctx, stopCtx := signal.NotifyContext(context.Background(), stopSignals(verb)...)
	go func() {
		// After the first signal, a second one kills at once instead of
		// waiting for the graceful drain.
		<-ctx.Done()
		stopCtx()
	}()
	if verb != "serve" {
		return ctx, stopCtx
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				if r := env.reload.Load(); r != nil {
					(*r)()
					continue
				}
				log.Info("SIGHUP: nothing to reload, still serving: the TLS certificate and key (--tls-cert, --tls-key) are re-read by themselves when their files change; other settings, --tls-client-ca included, take a restart (SIGTERM drains first)")
			case <-done:
				return
			}
		}
	}()
	return ctx, func() {
		signal.Stop(hup)
		close(done)
		stopCtx()
	}
}

// serverVerb tells whether args run a server verb ("serve" or "dev"; ""
// for the others) and returns a logger like the one that verb will use
// (--log-level, --output json), for what happens before it runs and
// around it: signals, the file limit.
func serverVerb(args []string, env *Env) (string, *slog.Logger) {
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	root := newRootCmd(&Env{Stdin: env.Stdin, Stdout: io.Discard, Stderr: io.Discard, Getenv: env.Getenv})
	cmd, rest, err := root.Find(args)
	if err != nil || cmd == nil || (cmd.Name() != "serve" && cmd.Name() != "dev") {
		return "", discard
	}
	// Bad flags are reported by run; this just reads what it can.
	_ = cmd.ParseFlags(rest)
	var level slog.Level
	if f := cmd.Flags().Lookup("log-level"); f != nil {
		_ = level.UnmarshalText([]byte(f.Value.String()))
	}
	opts := &slog.HandlerOptions{Level: level}
	if f := cmd.Flags().Lookup("output"); f != nil && f.Value.String() == "json" {
		return cmd.Name(), slog.New(slog.NewJSONHandler(env.Stderr, opts))
	}
	return cmd.Name(), slog.New(slog.NewTextHandler(env.Stderr, opts))
}
