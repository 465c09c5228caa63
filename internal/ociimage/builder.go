package ociimage

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image is. docs/image.md states the same in its table, and the
// image test checks the two agree.
const (
	// BinaryPath is where the binary lives: on the PATH the image sets, so
	// `docker exec CONTAINER confgate get ...` works too.
	BinaryPath = "/usr/local/bin/confgate"
	// UID and GID of the non-root user "nonroot" the image runs as. 65532
	// is the number distroless images use, so volume permissions and
	// Kubernetes runAsUser settings written for those carry over.
	UID = 65532
	GID = 65532
	// User is the image's User: numeric, so runtimes can tell it is not
	// root without reading /etc/passwd (Kubernetes runAsNonRoot needs that).
	User = "65532:65532"
	// GRPCPort and AdminPort are the exposed ports: serve's gRPC listener
	// and its admin HTTP listener (/healthz, /readyz, /metrics).
	GRPCPort  = "50051/tcp"
	AdminPort = "9464/tcp"
	// DefaultCACerts is Debian's CA bundle on the build machine. Gateways
	// that reach Kafka over TLS with --kafka-tls and no --kafka-tls-ca
	// verify brokers against it; Go reads it from this same path.
	DefaultCACerts = "/etc/ssl/certs/ca-certificates.crt"
	// DefaultRepository names the image; its tag is the version.
	DefaultRepository = "confgate/confgate"
	// DefaultSource is the org.opencontainers.image.source label.
	DefaultSource = "https://github.com/confgate/confgate"

	buildinfoPkg = "github.com/confgate/confgate/internal/buildinfo"
	title        = "confgate"
	description  = "confgate gateway: serves configuration from a compacted Kafka topic to clients over gRPC streams"
)

// Entrypoint, Cmd and Env of the image. serve binds loopback by default;
// in a container the listeners must bind every interface to be reachable
// through published ports. The two variables follow serve's
// CONFGATE_<FLAG> convention, so a flag on the command line still wins.
var (
	Entrypoint = []string{BinaryPath}
	Cmd        = []string{"serve"}
	Env        = []string{
		"PATH=/usr/local/bin",
		"CONFGATE_LISTEN=0.0.0.0:50051",
		"CONFGATE_ADMIN_LISTEN=0.0.0.0:9464",
	}
)

// Config describes one image build. Start from Defaults(): the zero value
// of a field that Defaults sets is taken literally (an empty CACerts leaves
// the certificates out).
type Config struct {
	// Dir is the root of the confgate module to build (default ".").
	Dir string
	// Out is the OCI image layout tarball to write. Required. It is
	// replaced atomically: a failed build leaves any previous one.
	Out string
	// Go is the go command that builds the binary (default "go").
	Go string
	// Arch is the GOARCH of the binary and of the image (OS is linux).
	// Default: this machine's.
	Arch string
	// Version is stamped into the binary and is the image's version label
	// and tag. Empty: `git describe --tags --always --dirty` in Dir.
	Version string
	// Commit is stamped into the binary and is the revision label. Empty:
	// `git rev-parse HEAD` in Dir, with "-dirty" when tracked files have
	// uncommitted changes (the convention of confgate version).
	Commit string
	// Created is the image's creation time and the time of every file in
	// it. Zero: the commit time of HEAD, so rebuilding a commit gives the
	// same digest (SOURCE_DATE_EPOCH in ./cmd/build sets it too).
	Created time.Time
	// Repository is the image name; the reference is Repository:tag, the
	// tag being Version with characters a tag cannot hold replaced by "-".
	Repository string
	// Source is the org.opencontainers.image.source label.
	Source string
	// CACerts is a PEM bundle copied to /etc/ssl/certs/ca-certificates.crt;
	// empty leaves it out (TLS to Kafka then needs --kafka-tls-ca). The
	// image's digest depends on this file: reproducible builds need the
	// same bundle.
	CACerts string
}

// Defaults returns the settings `make image` uses.
func Defaults() Config {
	return Config{
		Dir:        ".",
		Go:         "go",
		Arch:       runtime.GOARCH,
		Repository: DefaultRepository,
		Source:     DefaultSource,
		CACerts:    DefaultCACerts,
	}
}

// Result says what Build wrote.
type Result struct {
	// Ref is the image reference written into index.json
	// (docker.io/confgate/confgate:TAG for the default repository).
	Ref string
	// Digest is the image manifest's digest ("sha256:...").
	Digest string
	// Version, Commit and Created as resolved (see Config).
	Version string
	Commit  string
	Created time.Time
}

// Build compiles confgate, assembles the image and writes it to cfg.Out.
func Build(ctx context.Context, cfg Config) (Result, error) {
	if cfg.Out == "" {
		return Result{}, errors.New("ociimage: no output file")
	}
	if cfg.Dir == "" {
		cfg.Dir = "."
	}
	if cfg.Go == "" {
		cfg.Go = "go"
	}
	if cfg.Arch == "" {
		cfg.Arch = runtime.GOARCH
	}
	if err := resolveFromGit(ctx, &cfg); err != nil {
		return Result{}, err
	}
	ref, err := reference(cfg.Repository, cfg.Version)
	if err != nil {
		return Result{}, err
	}
	res := Result{Ref: ref.full, Version: cfg.Version, Commit: cfg.Commit, Created: cfg.Created}

	tmp, err := os.MkdirTemp("", "confgate-image-")
	if err != nil {
		return res, err
	}
	defer os.RemoveAll(tmp)

	bin := filepath.Join(tmp, "confgate")
	if err := buildBinary(ctx, cfg, bin); err != nil {
		return res, err
	}
	binary, err := os.ReadFile(bin)
	if err != nil {
		return res, err
	}
	var caCerts []byte
	if cfg.CACerts != "" {
		if caCerts, err = os.ReadFile(cfg.CACerts); err != nil {
			return res, fmt.Errorf("ociimage: CA certificates (an empty CACerts leaves them out): %w", err)
		}
	}
	base, err := baseLayer(caCerts, cfg.Created)
	if err != nil {
		return res, err
	}
	app, err := binaryLayer(binary, cfg.Created)
	if err != nil {
		return res, err
	}

	img, err := image(cfg, base, app)
	if err != nil {
		return res, err
	}
	digest, err := img.Digest()
	if err != nil {
		return res, err
	}
	res.Digest = digest.String()

	idx := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{
		Add: img,
		Descriptor: v1.Descriptor{
			Annotations: map[string]string{
				// The OCI name of the image (podman, skopeo and crane read
				// it), and containerd's (Docker with the containerd image
				// store): both the full reference, so each names it alike.
				"org.opencontainers.image.ref.name": ref.full,
				"io.containerd.image.name":          ref.full,
			},
			Platform: &v1.Platform{OS: "linux", Architecture: cfg.Arch},
		},
	})
	dir := filepath.Join(tmp, "layout")
	if _, err := layout.Write(dir, idx); err != nil {
		return res, fmt.Errorf("ociimage: write layout: %w", err)
	}
	if err := writeArchive(dir, img, ref.docker, cfg.Created, cfg.Out); err != nil {
		return res, err
	}
	return res, nil
}

// buildBinary compiles a static confgate for linux/cfg.Arch: no cgo (the
// image has no libc), -trimpath and no VCS stamp so the bytes depend only
// on the source and the toolchain, -s -w to drop the symbol table and
// DWARF (stack traces and pprof still work; debuggers need a local build).
// It runs in the environment buildEnv makes, not the caller's (goenv.go
// says why).
func buildBinary(ctx context.Context, cfg Config, out string) error {
	environ := os.Environ()
	kept, err := callerGoEnv(ctx, cfg.Go, cfg.Dir, environ)
	if err != nil {
		return err
	}
	ldflags := fmt.Sprintf("-s -w -X %s.version=%s -X %s.commit=%s", buildinfoPkg, cfg.Version, buildinfoPkg, cfg.Commit)
	cmd := exec.CommandContext(ctx, cfg.Go, "build", "-trimpath", "-buildvcs=false", "-ldflags", ldflags, "-o", out, "./cmd/confgate")
	cmd.Dir = cfg.Dir
	cmd.Env = buildEnv(environ, kept, cfg.Arch)
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("ociimage: go build: %w\n%s", err, b)
	}
	return nil
}

// labels are the image's OCI labels, also set as manifest annotations
// (registries and tools that read only the manifest show them too).
func labels(cfg Config) map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       title,
		"org.opencontainers.image.description": description,
		"org.opencontainers.image.version":     cfg.Version,
		"org.opencontainers.image.revision":    cfg.Commit,
		"org.opencontainers.image.source":      cfg.Source,
		"org.opencontainers.image.created":     cfg.Created.UTC().Format(time.RFC3339),
	}
}

// image assembles the image from an empty base: OCI media types, the two
// layers (base files, then the binary, which changes more often and so
// comes last) and the configuration.
func image(cfg Config, base, app []byte) (v1.Image, error) {
	created := v1.Time{Time: cfg.Created.UTC()}
	var adds []mutate.Addendum
	for _, l := range []struct {
		data []byte
		by   string
	}{
		{base, "confgate image: /etc/passwd, /etc/group (nonroot 65532), CA certificates, /tmp, /home/nonroot"},
		{app, "confgate image: " + BinaryPath + " (static, linux/" + cfg.Arch + ")"},
	} {
		layer, err := tarball.LayerFromOpener(opener(l.data),
			tarball.WithMediaType(types.OCILayer),
			// gzip's default level: measured on this image, 0.4% larger
			// than best compression in less than half the time.
			tarball.WithCompressionLevel(gzip.DefaultCompression),
			// Compress once: the digest and the layout writer both read
			// the compressed bytes.
			tarball.WithCompressedCaching)
		if err != nil {
			return nil, fmt.Errorf("ociimage: layer: %w", err)
		}
		adds = append(adds, mutate.Addendum{Layer: layer, History: v1.History{Created: created, CreatedBy: l.by}})
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("ociimage: append layers: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = cfg.Arch
	cf.Created = created
	ls := labels(cfg)
	cf.Config = v1.Config{
		User:         User,
		Entrypoint:   slices.Clone(Entrypoint),
		Cmd:          slices.Clone(Cmd),
		Env:          slices.Clone(Env),
		ExposedPorts: map[string]struct{}{GRPCPort: {}, AdminPort: {}},
		WorkingDir:   "/",
		Labels:       ls,
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return nil, fmt.Errorf("ociimage: config: %w", err)
	}
	annotated, ok := mutate.Annotations(img, maps.Clone(ls)).(v1.Image)
	if !ok {
		return nil, errors.New("ociimage: annotations did not keep an image")
	}
	return annotated, nil
}

// ref is an image reference in the two spellings tools want.
type ref struct {
	full   string // docker.io/confgate/confgate:v1: OCI ref.name, containerd
	docker string // confgate/confgate:v1: manifest.json RepoTags
}

var notTagChar = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// tagFor makes a version into a valid tag ([A-Za-z0-9_][A-Za-z0-9_.-]{0,127}):
// git describe output already is one; a semver build suffix ("+meta") is not.
func tagFor(version string) string {
	t := notTagChar.ReplaceAllString(version, "-")
	t = strings.TrimLeft(t, ".-")
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}

func reference(repository, version string) (ref, error) {
	tag := tagFor(version)
	if tag == "" {
		return ref{}, fmt.Errorf("ociimage: version %q leaves no tag", version)
	}
	t, err := name.NewTag(repository + ":" + tag)
	if err != nil {
		return ref{}, fmt.Errorf("ociimage: image reference: %w", err)
	}
	reg := t.Context().RegistryStr()
	if reg == name.DefaultRegistry {
		// Docker Hub, as Docker and containerd spell it.
		reg = "docker.io"
	}
	full := reg + "/" + t.Context().RepositoryStr() + ":" + t.TagStr()
	docker := repository + ":" + t.TagStr()
	return ref{full: full, docker: docker}, nil
}
