package ociimage

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// moduleRoot is the confgate module the tests build and read.
const moduleRoot = "../.."

// envMap reads an environment list, failing on a key set twice: exec
// would take the last, and the test would then check the wrong value.
func envMap(t *testing.T, env []string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, kv := range env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("environment entry %q has no =", kv)
		}
		if _, dup := m[k]; dup {
			t.Fatalf("%s set twice in %q", k, env)
		}
		m[k] = v
	}
	return m
}

func TestBuildEnv(t *testing.T) {
	pinned := func(arch string) map[string]string {
		return map[string]string{"GOENV": "off", "GOTOOLCHAIN": "local", "GOWORK": "off", "CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": arch}
	}
	with := func(m map[string]string, kvs ...string) map[string]string {
		for i := 0; i < len(kvs); i += 2 {
			m[kvs[i]] = kvs[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		environ []string
		kept    map[string]string
		arch    string
		want    map[string]string
	}{
		{
			name: "empty",
			arch: "amd64",
			want: pinned("amd64"),
		},
		{
			name: "settings that change the binary are dropped",
			environ: []string{
				"GOFLAGS=-race -tags=x", "GOAMD64=v3", "GOARM64=v9.0", "GOEXPERIMENT=arenas", "GOFIPS140=latest",
				"GODEBUG=http2client=0", "GO111MODULE=off", "GOENV=/home/u/.config/go/env", "GOTOOLCHAIN=go1.99.0",
				"GOWORK=/src/go.work", "GOOS=windows", "GOARCH=386", "CGO_ENABLED=1", "CGO_CFLAGS=-O3",
				"CC=clang", "CXX=clang++", "PKG_CONFIG=pkgconf",
			},
			arch: "arm64",
			want: pinned("arm64"),
		},
		{
			name: "other variables and the go command's own limits pass",
			environ: []string{
				"HOME=/home/u", "PATH=/usr/lib/go/bin:/usr/bin", "TMPDIR=/var/tmp", "HTTPS_PROXY=http://proxy:3128",
				"no_proxy=localhost", "GIT_SSH_COMMAND=ssh -i key", "SSL_CERT_FILE=/etc/ca.pem", "CGOX=not cgo's",
				"GOROOT=/opt/go", "GOMAXPROCS=1", "GOGC=50", "GOMEMLIMIT=1GiB", "EMPTY=", "NOT_AN_ENTRY",
			},
			arch: "amd64",
			want: with(pinned("amd64"),
				"HOME", "/home/u", "PATH", "/usr/lib/go/bin:/usr/bin", "TMPDIR", "/var/tmp", "HTTPS_PROXY", "http://proxy:3128",
				"no_proxy", "localhost", "GIT_SSH_COMMAND", "ssh -i key", "SSL_CERT_FILE", "/etc/ca.pem", "CGOX", "not cgo's",
				"GOROOT", "/opt/go", "GOMAXPROCS", "1", "GOGC", "50", "GOMEMLIMIT", "1GiB", "EMPTY", ""),
		},
		{
			// The environment's GOPROXY is replaced by the resolved one
			// (the same value: go env puts the environment first).
			name:    "resolved module and cache settings are kept",
			environ: []string{"GOPROXY=https://goproxy.internal", "GOPRIVATE=example.com/*"},
			kept: map[string]string{
				"GOPROXY": "https://goproxy.internal", "GOPRIVATE": "example.com/*", "GONOPROXY": "example.com/*",
				"GOCACHE": "/cache/go-build", "GOMODCACHE": "/cache/mod", "GOPATH": "/home/u/go", "GOAUTH": "netrc",
				"GOCACHEPROG": "", "GOTMPDIR": "",
				// Not a kept setting: an answer with more than was
				// asked must not smuggle it in.
				"GOFLAGS": "-race",
			},
			arch: "amd64",
			want: with(pinned("amd64"),
				"GOPROXY", "https://goproxy.internal", "GOPRIVATE", "example.com/*", "GONOPROXY", "example.com/*",
				"GOCACHE", "/cache/go-build", "GOMODCACHE", "/cache/mod", "GOPATH", "/home/u/go", "GOAUTH", "netrc"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := envMap(t, buildEnv(tc.environ, tc.kept, tc.arch))
			for k, v := range tc.want {
				if g, ok := got[k]; !ok || g != v {
					t.Errorf("%s = %q (set: %v), want %q", k, g, ok, v)
				}
			}
			for k, v := range got {
				if _, ok := tc.want[k]; !ok {
					t.Errorf("%s=%q passed to the build", k, v)
				}
			}
		})
	}
}

// callerGoEnv asks the real go command: a setting from the `go env -w`
// file and one from the environment both come through, and a GOTOOLCHAIN
// in the file that names a toolchain this machine lacks does not make go
// env fetch one (GOPROXY=off: a fetch would fail at once, offline).
func TestCallerGoEnv(t *testing.T) {
	file := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(file, []byte("GOPROXY=off\nGOTOOLCHAIN=go1.99.0\nGOFLAGS=-race\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOENV", file)
	t.Setenv("GONOSUMDB", "example.com/private")
	t.Setenv("GOFLAGS", "-tags=never")
	got, err := callerGoEnv(t.Context(), "go", moduleRoot, os.Environ())
	if err != nil {
		t.Fatal(err)
	}
	if got["GOPROXY"] != "off" || got["GONOSUMDB"] != "example.com/private" || got["GOCACHE"] == "" || got["GOMODCACHE"] == "" {
		t.Errorf("callerGoEnv = %v, want GOPROXY off (the file), GONOSUMDB example.com/private (the environment), and the caches", got)
	}
	for k := range got {
		if !slices.Contains(keptGoEnv, k) {
			t.Errorf("callerGoEnv returned %s, which is not a kept setting", k)
		}
	}
}
