//go:build !unix

package main

import "log/slog"

// raiseNofile does nothing where there is no RLIMIT_NOFILE.
func raiseNofile(*slog.Logger) {}
