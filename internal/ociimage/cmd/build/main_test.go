package main

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/ociimage"
)

func TestParse(t *testing.T) {
	defaults := ociimage.Defaults()
	defaults.Out = "dist/confgate-image.tar"
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want func(*ociimage.Config)
		err  string
	}{
		{name: "make image", want: func(*ociimage.Config) {}},
		{name: "overrides", args: []string{"-o", "x.tar", "-arch", "arm64", "-version", "v1.2.3", "-commit", "abc", "-repository", "registry.example/confgate", "-ca-certs", ""},
			want: func(c *ociimage.Config) {
				c.Out, c.Arch, c.Version, c.Commit, c.Repository, c.CACerts = "x.tar", "arm64", "v1.2.3", "abc", "registry.example/confgate", ""
			}},
		{name: "SOURCE_DATE_EPOCH", env: map[string]string{"SOURCE_DATE_EPOCH": "1700000000"},
			want: func(c *ociimage.Config) { c.Created = time.Unix(1700000000, 0).UTC() }},
		{name: "bad SOURCE_DATE_EPOCH", env: map[string]string{"SOURCE_DATE_EPOCH": "yesterday"}, err: "SOURCE_DATE_EPOCH"},
		{name: "negative SOURCE_DATE_EPOCH", env: map[string]string{"SOURCE_DATE_EPOCH": "-1"}, err: "SOURCE_DATE_EPOCH"},
		{name: "no output", args: []string{"-o", ""}, err: "-o must name"},
		{name: "stray argument", args: []string{"serve"}, err: "unexpected arguments"},
		{name: "unknown flag", args: []string{"-push"}, err: "flag provided but not defined"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parse(tc.args, func(k string) string { return tc.env[k] }, io.Discard)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("parse(%q) error %v, want one containing %q", tc.args, err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			want := defaults
			tc.want(&want)
			if got != want {
				t.Fatalf("parse(%q) = %+v, want %+v", tc.args, got, want)
			}
		})
	}
}

func TestParseHelp(t *testing.T) {
	var out strings.Builder
	if _, err := parse([]string{"-h"}, func(string) string { return "" }, &out); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("parse(-h) error %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(out.String(), "-ca-certs") {
		t.Errorf("usage %q does not list the flags", out.String())
	}
}
