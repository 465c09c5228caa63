package ociimage

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// resolveFromGit fills Version, Commit and Created from the repository in
// cfg.Dir where they are unset. Only what is needed is asked, so a build
// with all three given needs no git at all (a source tarball).
func resolveFromGit(ctx context.Context, cfg *Config) error {
	if cfg.Version == "" {
		v, err := git(ctx, cfg.Dir, "describe", "--tags", "--always", "--dirty")
		if err != nil {
			return err
		}
		cfg.Version = v
	}
	if cfg.Commit == "" {
		rev, err := git(ctx, cfg.Dir, "rev-parse", "HEAD")
		if err != nil {
			return err
		}
		// Tracked files only, as git describe --dirty: an untracked
		// scratch file is not part of the build.
		st, err := git(ctx, cfg.Dir, "status", "--porcelain", "--untracked-files=no")
		if err != nil {
			return err
		}
		if st != "" {
			rev += "-dirty"
		}
		cfg.Commit = rev
	}
	if cfg.Created.IsZero() {
		ct, err := git(ctx, cfg.Dir, "log", "-1", "--format=%ct", "HEAD")
		if err != nil {
			return err
		}
		sec, err := strconv.ParseInt(ct, 10, 64)
		if err != nil {
			return fmt.Errorf("ociimage: commit time %q: %w", ct, err)
		}
		cfg.Created = time.Unix(sec, 0).UTC()
	}
	return nil
}

func git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("ociimage: git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}
