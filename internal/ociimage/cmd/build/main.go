// Command build writes the confgate container image as an OCI image layout
// tarball, without a Docker daemon or a registry (`make image` runs it):
//
//	go run ./internal/ociimage/cmd/build -o dist/confgate-image.tar
//
// Flags override what is otherwise taken from git (version, commit,
// creation time) and the defaults in package ociimage; SOURCE_DATE_EPOCH,
// when set, is the creation time. docs/image.md describes the image.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"time"

	"github.com/confgate/confgate/internal/ociimage"
)

func main() {
	cfg, err := parse(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := ociimage.Build(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	fmt.Printf("wrote %s\n  image   %s\n  digest  %s\n  commit  %s\n  created %s\n",
		cfg.Out, res.Ref, res.Digest, res.Commit, res.Created.Format(time.RFC3339))
}

// parse turns the command line and environment into a build Config.
func parse(args []string, getenv func(string) string, stderr io.Writer) (ociimage.Config, error) {
	cfg := ociimage.Defaults()
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Out, "o", "dist/confgate-image.tar", "OCI image layout tarball to write")
	fs.StringVar(&cfg.Dir, "C", cfg.Dir, "root of the confgate module to build")
	fs.StringVar(&cfg.Go, "go", cfg.Go, "go command that builds the binary")
	fs.StringVar(&cfg.Arch, "arch", cfg.Arch, "GOARCH of the binary and the image")
	fs.StringVar(&cfg.Version, "version", "", "version to stamp and label (default: git describe --tags --always --dirty)")
	fs.StringVar(&cfg.Commit, "commit", "", "commit to stamp and label (default: git rev-parse HEAD, -dirty with uncommitted changes)")
	fs.StringVar(&cfg.Repository, "repository", cfg.Repository, "image name; the tag is the version")
	fs.StringVar(&cfg.Source, "source", cfg.Source, "org.opencontainers.image.source label")
	fs.StringVar(&cfg.CACerts, "ca-certs", cfg.CACerts, "PEM CA bundle copied into the image; empty leaves it out")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.Out == "" {
		return cfg, errors.New("-o must name the file to write")
	}
	// The reproducible-builds convention: seconds since the epoch.
	if s := getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil || sec < 0 {
			return cfg, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", s)
		}
		cfg.Created = time.Unix(sec, 0).UTC()
	}
	return cfg, nil
}
