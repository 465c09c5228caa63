package ociimage

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
)

// The go build that makes the image's binary runs in an environment the
// builder controls, so the binary depends on the source, go.mod and the
// toolchain, not on whoever runs the build. Left to the caller's
// environment, GOFLAGS=-race fails the build (the race detector needs
// cgo), and GOAMD64, GOEXPERIMENT, GOFIPS140, a GOTOOLCHAIN that switches
// compilers or a GOWORK that swaps dependencies each change the binary,
// and so the image's digest. The same settings in the file `go env -w`
// writes count as much, so that file is switched off too.

// keptGoEnv are the go command settings taken from the caller, as `go env`
// resolves them (the environment, then the `go env -w` file): where
// modules come from, how to authenticate, where the caches are. None of
// them changes what is compiled: the build cache is keyed by everything
// that does, and go.sum checks every module whichever proxy serves it.
var keptGoEnv = []string{
	"GOPATH", "GOMODCACHE", "GOCACHE", "GOCACHEPROG", "GOTMPDIR",
	"GOPROXY", "GONOPROXY", "GOPRIVATE", "GOSUMDB", "GONOSUMDB", "GOINSECURE", "GOVCS", "GOAUTH",
}

// passedGoEnv are Go variables of the caller's environment passed on as
// they are. GOROOT goes with the go command in choosing the toolchain; the
// others bound the go command's own memory and threads.
var passedGoEnv = []string{"GOROOT", "GOMAXPROCS", "GOGC", "GOMEMLIMIT"}

// cgoEnv are the C toolchain variables. With cgo off nothing reads them;
// dropping them keeps the build's inputs to the ones docs/image.md lists.
var cgoEnv = []string{"CC", "CXX", "AR", "FC", "PKG_CONFIG", "GCCGO"}

// pinnedEnv fixes what the build is, whatever the caller has set.
func pinnedEnv(arch string) []string {
	return []string{
		// No `go env -w` file: its GOFLAGS, GOAMD64, GOEXPERIMENT, ...
		// would apply. The toolchain's own $GOROOT/go.env still does.
		"GOENV=off",
		// The go command the builder runs compiles, never another one
		// that GOTOOLCHAIN or go.mod's toolchain line would switch to or
		// download: under `make image` that is the go that ran the
		// builder (go run puts its own bin first on PATH).
		"GOTOOLCHAIN=local",
		// go.mod alone picks the dependencies, not a go.work found in a
		// directory above the checkout.
		"GOWORK=off",
		// Static: the image has no libc.
		"CGO_ENABLED=0",
		"GOOS=linux",
		"GOARCH=" + arch,
	}
}

// buildEnv is the go build's environment: the caller's environ without
// any Go or C toolchain variable but passedGoEnv, then the resolved
// keptGoEnv settings (kept), then pinnedEnv. Every other Go setting
// (GOFLAGS, GOAMD64 and the other GO<arch> levels, GOEXPERIMENT,
// GOFIPS140, GODEBUG, GO111MODULE, ...) takes the toolchain's default.
// Non-Go variables (HOME, PATH, TMPDIR, proxies, git and ssh settings)
// stay: modules may need them to download, and they do not reach the
// compiler.
func buildEnv(environ []string, kept map[string]string, arch string) []string {
	var env []string
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		goVar := strings.HasPrefix(k, "GO") || strings.HasPrefix(k, "CGO_") || slices.Contains(cgoEnv, k)
		if goVar && !slices.Contains(passedGoEnv, k) {
			continue
		}
		env = append(env, kv)
	}
	for _, k := range keptGoEnv {
		// An empty value is the same as unset to the go command.
		if v := kept[k]; v != "" {
			env = append(env, k+"="+v)
		}
	}
	return append(env, pinnedEnv(arch)...)
}

// callerGoEnv resolves keptGoEnv as the caller's go command sees them,
// with the caller's environment and `go env -w` file. GOTOOLCHAIN=local:
// answering must not switch to, or download, another toolchain.
func callerGoEnv(ctx context.Context, goCmd, dir string, environ []string) (map[string]string, error) {
	cmd := exec.CommandContext(ctx, goCmd, append([]string{"env", "-json"}, keptGoEnv...)...)
	cmd.Dir = dir
	cmd.Env = append(slices.Clip(environ), "GOTOOLCHAIN=local")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("ociimage: go env: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	var kept map[string]string
	if err := json.Unmarshal(out, &kept); err != nil {
		return nil, fmt.Errorf("ociimage: go env: %w", err)
	}
	return kept, nil
}
