package main

import (
	"os"
)

func main() {
	env := &Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv}
	args := os.Args[1:]
	verb, log := serverVerb(args, env)
	if verb != "" {
		raiseNofile(log)
	}
	ctx, stop := handleSignals(verb, log, env)
	code := run(ctx, args, env)
	stop()
	os.Exit(code)
}
