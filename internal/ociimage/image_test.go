//go:build linux

package ociimage

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"crypto/x509"
	"debug/buildinfo"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"maps"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// The image tests build the image as `make image` does (Defaults, the
// module root, a file to write) and read it back with the standard
// library, so a bug in the builder's use of go-containerregistry cannot
// hide itself: every blob is found from index.json, its digest and size
// checked, the layers unpacked into a directory. One subtest then reads it
// with go-containerregistry too, as crane would.

var (
	sharedOnce sync.Once
	sharedDir  string
	sharedRes  Result
	sharedErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}

// buildImage builds the image into a new file under dir.
func buildImage(t *testing.T, dir string) (string, Result) {
	t.Helper()
	cfg := Defaults()
	cfg.Dir = moduleRoot
	cfg.Out = filepath.Join(dir, "confgate-image.tar")
	start := time.Now()
	res, err := Build(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("built %s (%s) in %v", res.Ref, res.Digest, time.Since(start).Round(time.Millisecond))
	return cfg.Out, res
}

// sharedImage is one build shared by the tests: building compiles
// confgate, the slow part.
func sharedImage(t *testing.T) (string, Result) {
	t.Helper()
	sharedOnce.Do(func() {
		if sharedDir, sharedErr = os.MkdirTemp("", "ociimage-test-"); sharedErr != nil {
			return
		}
		cfg := Defaults()
		cfg.Dir = moduleRoot
		cfg.Out = filepath.Join(sharedDir, "confgate-image.tar")
		sharedRes, sharedErr = Build(t.Context(), cfg)
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return filepath.Join(sharedDir, "confgate-image.tar"), sharedRes
}

// The JSON documents of the OCI image spec, as far as the tests read them.
type (
	descriptor struct {
		MediaType   string            `json:"mediaType"`
		Digest      string            `json:"digest"`
		Size        int64             `json:"size"`
		Annotations map[string]string `json:"annotations"`
		Platform    *struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
		} `json:"platform"`
	}
	index struct {
		SchemaVersion int          `json:"schemaVersion"`
		MediaType     string       `json:"mediaType"`
		Manifests     []descriptor `json:"manifests"`
	}
	manifest struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Config        descriptor        `json:"config"`
		Layers        []descriptor      `json:"layers"`
		Annotations   map[string]string `json:"annotations"`
	}
	imageConfig struct {
		Created      time.Time `json:"created"`
		Architecture string    `json:"architecture"`
		OS           string    `json:"os"`
		Config       struct {
			User         string              `json:"User"`
			Entrypoint   []string            `json:"Entrypoint"`
			Cmd          []string            `json:"Cmd"`
			Env          []string            `json:"Env"`
			ExposedPorts map[string]struct{} `json:"ExposedPorts"`
			Labels       map[string]string   `json:"Labels"`
			WorkingDir   string              `json:"WorkingDir"`
		} `json:"config"`
		RootFS struct {
			Type    string   `json:"type"`
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
		History []struct {
			Created   time.Time `json:"created"`
			CreatedBy string    `json:"created_by"`
		} `json:"history"`
	}
)

// unpacked is an image read back from its archive.
type unpacked struct {
	files    map[string][]byte // archive member -> contents
	index    index
	manifest manifest
	config   imageConfig
	docker   []struct {
		Config           string
		RepoTags, Layers []string
	}
	// root holds the layers, applied in order; headers has the tar
	// header of every path in them (directories end in "/").
	root    string
	headers map[string]*tar.Header
}

var digestRe = regexp.MustCompile(`^sha256:([0-9a-f]{64})$`)

// blob returns the blob d points at, checking its size and digest.
func (u *unpacked) blob(t *testing.T, d descriptor) []byte {
	t.Helper()
	m := digestRe.FindStringSubmatch(d.Digest)
	if m == nil {
		t.Fatalf("digest %q is not sha256:<64 hex>", d.Digest)
	}
	b, ok := u.files["blobs/sha256/"+m[1]]
	if !ok {
		t.Fatalf("no blob %s in the archive", d.Digest)
	}
	if int64(len(b)) != d.Size {
		t.Fatalf("blob %s has %d bytes, its descriptor says %d", d.Digest, len(b), d.Size)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != m[1] {
		t.Fatalf("blob %s has digest sha256:%x", d.Digest, sum)
	}
	return b
}

// extract writes the archive's members into a new directory, as
// `tar -xf` would, and returns it.
func (u *unpacked) extract(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, b := range u.files {
		dst := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func decode(t *testing.T, what string, b []byte, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func unpack(t *testing.T, archive string) *unpacked {
	t.Helper()
	f, err := os.Open(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := &unpacked{files: map[string][]byte{}, root: t.TempDir(), headers: map[string]*tar.Header{}}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeDir {
			continue
		}
		if h.Typeflag != tar.TypeReg {
			t.Fatalf("archive member %s has type %q, want only files and directories", h.Name, h.Typeflag)
		}
		if _, dup := u.files[h.Name]; dup {
			t.Fatalf("archive member %s appears twice", h.Name)
		}
		if u.files[h.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}

	var layout struct {
		Version string `json:"imageLayoutVersion"`
	}
	decode(t, "oci-layout", u.files["oci-layout"], &layout)
	if layout.Version != "1.0.0" {
		t.Fatalf("oci-layout imageLayoutVersion %q, want 1.0.0", layout.Version)
	}
	decode(t, "index.json", u.files["index.json"], &u.index)
	if u.index.SchemaVersion != 2 || u.index.MediaType != "application/vnd.oci.image.index.v1+json" || len(u.index.Manifests) != 1 {
		t.Fatalf("index.json: schemaVersion %d, mediaType %q, %d manifests; want 2, an OCI index, 1", u.index.SchemaVersion, u.index.MediaType, len(u.index.Manifests))
	}
	md := u.index.Manifests[0]
	if md.MediaType != "application/vnd.oci.image.manifest.v1+json" {
		t.Fatalf("index.json points at a %q, want an OCI image manifest", md.MediaType)
	}
	decode(t, "manifest", u.blob(t, md), &u.manifest)
	if u.manifest.SchemaVersion != 2 || u.manifest.MediaType != md.MediaType {
		t.Fatalf("manifest: schemaVersion %d, mediaType %q", u.manifest.SchemaVersion, u.manifest.MediaType)
	}
	if u.manifest.Config.MediaType != "application/vnd.oci.image.config.v1+json" {
		t.Fatalf("config media type %q", u.manifest.Config.MediaType)
	}
	decode(t, "config", u.blob(t, u.manifest.Config), &u.config)
	if len(u.config.RootFS.DiffIDs) != len(u.manifest.Layers) || u.config.RootFS.Type != "layers" {
		t.Fatalf("config rootfs %+v for %d layers", u.config.RootFS, len(u.manifest.Layers))
	}
	for i, l := range u.manifest.Layers {
		if l.MediaType != "application/vnd.oci.image.layer.v1.tar+gzip" {
			t.Fatalf("layer %d media type %q", i, l.MediaType)
		}
		u.applyLayer(t, i, u.blob(t, l))
	}
	decode(t, "manifest.json", u.files["manifest.json"], &u.docker)

	// Nothing but the layout, manifest.json and the blobs reached from
	// index.json.
	want := []string{"oci-layout", "index.json", "manifest.json", "blobs/sha256/" + strings.TrimPrefix(md.Digest, "sha256:"),
		"blobs/sha256/" + strings.TrimPrefix(u.manifest.Config.Digest, "sha256:")}
	for _, l := range u.manifest.Layers {
		want = append(want, "blobs/sha256/"+strings.TrimPrefix(l.Digest, "sha256:"))
	}
	if got := slices.Sorted(maps.Keys(u.files)); !slices.Equal(got, slices.Sorted(slices.Values(want))) {
		t.Fatalf("archive members %q, want %q", got, want)
	}
	return u
}

// applyLayer extracts layer i into u.root, checking its diff ID.
func (u *unpacked) applyLayer(t *testing.T, i int, compressed []byte) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(compressed))
	if err != nil {
		t.Fatalf("layer %d: %v", i, err)
	}
	diff := sha256.New()
	tr := tar.NewReader(io.TeeReader(zr, diff))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("layer %d: %v", i, err)
		}
		clean := path.Clean(h.Name)
		if path.IsAbs(h.Name) || clean == ".." || strings.HasPrefix(clean, "../") || strings.Contains(h.Name, ".wh.") {
			t.Fatalf("layer %d: unexpected entry %q", i, h.Name)
		}
		dst := filepath.Join(u.root, filepath.FromSlash(clean))
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, 0o755); err != nil {
				t.Fatal(err)
			}
			u.headers[clean+"/"] = h
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			// Modes are checked from the headers; on disk the test
			// only needs to read and run the files.
			if err := os.WriteFile(dst, b, 0o700); err != nil {
				t.Fatal(err)
			}
			u.headers[clean] = h
		default:
			t.Fatalf("layer %d: %s has type %q, want only files and directories", i, h.Name, h.Typeflag)
		}
	}
	// The diff ID covers the whole uncompressed stream, padding included.
	if _, err := io.Copy(io.Discard, zr); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprintf("sha256:%x", diff.Sum(nil)); got != u.config.RootFS.DiffIDs[i] {
		t.Fatalf("layer %d has diff ID %s, the config says %s", i, got, u.config.RootFS.DiffIDs[i])
	}
}

// git runs git in the module root: the test's own view of the commit,
// independent of the builder's.
func gitOut(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "git", args...)
	cmd.Dir = moduleRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}

func TestImage(t *testing.T) {
	archive, res := sharedImage(t)
	u := unpack(t, archive)

	// What the image should say of itself, from git directly.
	version := gitOut(t, "describe", "--tags", "--always", "--dirty")
	head := gitOut(t, "rev-parse", "HEAD")
	commit := head
	if strings.HasSuffix(version, "-dirty") {
		commit += "-dirty"
	}
	created, err := time.Parse(time.RFC3339, gitOut(t, "log", "-1", "--format=%cI", "HEAD"))
	if err != nil {
		t.Fatal(err)
	}
	created = created.UTC()
	ref := "docker.io/confgate/confgate:" + version
	if res.Version != version || res.Commit != commit || !res.Created.Equal(created) || res.Ref != ref {
		t.Fatalf("Build resolved %+v; git says version %s, commit %s, created %v, so %s", res, version, commit, created, ref)
	}
	md := u.index.Manifests[0]
	if md.Digest != res.Digest {
		t.Errorf("index.json points at %s, Build reported %s", md.Digest, res.Digest)
	}

	t.Run("names", func(t *testing.T) {
		for _, a := range []string{"org.opencontainers.image.ref.name", "io.containerd.image.name"} {
			if got := md.Annotations[a]; got != ref {
				t.Errorf("index.json %s = %q, want %q", a, got, ref)
			}
		}
		if md.Platform == nil || md.Platform.OS != "linux" || md.Platform.Architecture != runtime.GOARCH {
			t.Errorf("index.json platform %+v, want linux/%s", md.Platform, runtime.GOARCH)
		}
		blob := func(d descriptor) string { return "blobs/sha256/" + strings.TrimPrefix(d.Digest, "sha256:") }
		var layers []string
		for _, l := range u.manifest.Layers {
			layers = append(layers, blob(l))
		}
		if len(u.docker) != 1 || u.docker[0].Config != blob(u.manifest.Config) ||
			!slices.Equal(u.docker[0].Layers, layers) || !slices.Equal(u.docker[0].RepoTags, []string{"confgate/confgate:" + version}) {
			t.Errorf("manifest.json %+v, want config %s, layers %q, tag confgate/confgate:%s", u.docker, blob(u.manifest.Config), layers, version)
		}
	})

	c := u.config.Config
	t.Run("config", func(t *testing.T) {
		ports := slices.Sorted(maps.Keys(c.ExposedPorts))
		for _, tc := range []struct {
			name      string
			got, want any
		}{
			{"os", u.config.OS, "linux"},
			{"architecture", u.config.Architecture, runtime.GOARCH},
			{"created", u.config.Created, created},
			{"User", c.User, "65532:65532"},
			{"Entrypoint", c.Entrypoint, []string{"/usr/local/bin/confgate"}},
			{"Cmd", c.Cmd, []string{"serve"}},
			{"ExposedPorts", ports, []string{"50051/tcp", "9464/tcp"}},
			{"Env", c.Env, []string{"PATH=/usr/local/bin", "CONFGATE_LISTEN=0.0.0.0:50051", "CONFGATE_ADMIN_LISTEN=0.0.0.0:9464"}},
			{"WorkingDir", c.WorkingDir, "/"},
		} {
			if fmt.Sprint(tc.got) != fmt.Sprint(tc.want) {
				t.Errorf("%s = %v, want %v", tc.name, tc.got, tc.want)
			}
		}
		for i, h := range u.config.History {
			if !h.Created.Equal(created) || h.CreatedBy == "" {
				t.Errorf("history %d: %+v, want created %v and a created_by", i, h, created)
			}
		}
		if len(u.config.History) != len(u.manifest.Layers) {
			t.Errorf("%d history entries for %d layers", len(u.config.History), len(u.manifest.Layers))
		}
	})

	t.Run("labels", func(t *testing.T) {
		want := map[string]string{
			"org.opencontainers.image.version":     version,
			"org.opencontainers.image.revision":    commit,
			"org.opencontainers.image.created":     created.Format(time.RFC3339),
			"org.opencontainers.image.source":      "https://github.com/confgate/confgate",
			"org.opencontainers.image.title":       "confgate",
			"org.opencontainers.image.description": c.Labels["org.opencontainers.image.description"],
		}
		if want["org.opencontainers.image.description"] == "" {
			t.Error("no org.opencontainers.image.description label")
		}
		if !maps.Equal(c.Labels, want) {
			t.Errorf("labels %v, want %v", c.Labels, want)
		}
		if !maps.Equal(u.manifest.Annotations, want) {
			t.Errorf("manifest annotations %v, want the labels %v", u.manifest.Annotations, want)
		}
	})

	t.Run("files", func(t *testing.T) {
		type file struct {
			typ      byte
			mode     int64
			uid, gid int
		}
		dir, reg := byte(tar.TypeDir), byte(tar.TypeReg)
		want := map[string]file{
			"etc/":                              {dir, 0o755, 0, 0},
			"etc/group":                         {reg, 0o644, 0, 0},
			"etc/passwd":                        {reg, 0o644, 0, 0},
			"etc/ssl/":                          {dir, 0o755, 0, 0},
			"etc/ssl/certs/":                    {dir, 0o755, 0, 0},
			"etc/ssl/certs/ca-certificates.crt": {reg, 0o644, 0, 0},
			"home/":                             {dir, 0o755, 0, 0},
			"home/nonroot/":                     {dir, 0o700, 65532, 65532},
			"tmp/":                              {dir, 0o1777, 0, 0},
			"usr/":                              {dir, 0o755, 0, 0},
			"usr/local/":                        {dir, 0o755, 0, 0},
			"usr/local/bin/":                    {dir, 0o755, 0, 0},
			"usr/local/bin/confgate":            {reg, 0o755, 0, 0},
		}
		if got := slices.Sorted(maps.Keys(u.headers)); !slices.Equal(got, slices.Sorted(maps.Keys(want))) {
			t.Fatalf("image files %q, want %q", got, slices.Sorted(maps.Keys(want)))
		}
		for p, h := range u.headers {
			if got := (file{h.Typeflag, h.Mode, h.Uid, h.Gid}); got != want[p] {
				t.Errorf("%s: type %q mode %#o owner %d:%d, want type %q mode %#o owner %d:%d",
					p, got.typ, got.mode, got.uid, got.gid, want[p].typ, want[p].mode, want[p].uid, want[p].gid)
			}
			if !h.ModTime.Equal(created) {
				t.Errorf("%s: mtime %v, want the commit time %v", p, h.ModTime, created)
			}
			// The user can write only its scratch space and its home:
			// not the binary, not the user database, not the CAs.
			if writableBy(h, 65532, 65532) && p != "tmp/" && p != "home/nonroot/" {
				t.Errorf("%s is writable by the image's user", p)
			}
		}
	})

	t.Run("user", func(t *testing.T) {
		uid, gid, _ := strings.Cut(c.User, ":")
		pw := readDB(t, filepath.Join(u.root, "etc/passwd"), 7)
		gr := readDB(t, filepath.Join(u.root, "etc/group"), 4)
		var home string
		for _, f := range pw {
			if f[2] == uid {
				if f[0] != "nonroot" || f[3] != gid {
					t.Errorf("passwd entry %q: want nonroot with group %s", f, gid)
				}
				home = strings.TrimPrefix(f[5], "/") + "/"
			}
		}
		if h, ok := u.headers[home]; !ok || fmt.Sprint(h.Uid) != uid {
			t.Errorf("the user's home %q is not a directory it owns", home)
		}
		if !slices.ContainsFunc(gr, func(f []string) bool { return f[2] == gid && f[0] == "nonroot" }) {
			t.Errorf("group has no nonroot group %s", gid)
		}
	})

	t.Run("CA certificates", func(t *testing.T) {
		got, err := os.ReadFile(filepath.Join(u.root, "etc/ssl/certs/ca-certificates.crt"))
		if err != nil {
			t.Fatal(err)
		}
		host, err := os.ReadFile(DefaultCACerts)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, host) {
			t.Errorf("the image's CA bundle differs from %s", DefaultCACerts)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(got) {
			t.Error("the image's CA bundle holds no certificate")
		}
	})

	bin := filepath.Join(u.root, "usr/local/bin/confgate")
	t.Run("static binary", func(t *testing.T) {
		f, err := elf.Open(bin)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
				t.Errorf("program header %v: the binary is dynamically linked", p.Type)
			}
		}
		libs, err := f.ImportedLibraries()
		if err != nil || len(libs) > 0 {
			t.Errorf("imported libraries %q (%v), want none", libs, err)
		}
		if want, ok := elfMachine[runtime.GOARCH]; !ok || f.Machine != want {
			t.Errorf("ELF machine %v for GOARCH %s", f.Machine, runtime.GOARCH)
		}
	})

	// The build settings the toolchain recorded in the binary: what
	// buildBinary pins, and nothing a caller's GOFLAGS, GOEXPERIMENT or
	// GO<arch> level could have added.
	t.Run("build settings", func(t *testing.T) {
		info, err := buildinfo.ReadFile(bin)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"-buildmode": "exe", "-compiler": "gc", "-trimpath": "true",
			"CGO_ENABLED": "0", "GOOS": "linux", "GOARCH": runtime.GOARCH,
		}
		// The CPU level (GOAMD64 and the like) is the toolchain's
		// default, as a go command with no settings of its own says.
		if level, ok := archLevel[runtime.GOARCH]; ok {
			want[level] = toolchainDefault(t, level)
		}
		got := map[string]string{}
		for _, s := range info.Settings {
			// go.mod's go line sets it when it is older than the
			// toolchain: the source's choice, not the environment's.
			if s.Key != "DefaultGODEBUG" {
				got[s.Key] = s.Value
			}
		}
		if !maps.Equal(got, want) {
			t.Errorf("build settings %v, want %v", got, want)
		}
	})

	t.Run("version", func(t *testing.T) {
		out, err := exec.CommandContext(t.Context(), bin, "version").Output()
		if err != nil {
			t.Fatalf("confgate version: %v", err)
		}
		lines := strings.Split(string(out), "\n")
		if len(lines) < 2 || lines[0] != "confgate "+c.Labels["org.opencontainers.image.version"] ||
			lines[1] != "commit  "+c.Labels["org.opencontainers.image.revision"] {
			t.Errorf("confgate version printed %q; labels say version %s, commit %s", out,
				c.Labels["org.opencontainers.image.version"], c.Labels["org.opencontainers.image.revision"])
		}
		out, err = exec.CommandContext(t.Context(), bin, "version", "-o", "json").Output()
		if err != nil {
			t.Fatalf("confgate version -o json: %v", err)
		}
		var info struct {
			Version   string `json:"version"`
			Commit    string `json:"commit"`
			GoVersion string `json:"go_version"`
		}
		decode(t, "version -o json", out, &info)
		if info.Version != version || info.Commit != commit || !strings.HasPrefix(info.GoVersion, "go") {
			t.Errorf("confgate version -o json = %s, want version %s, commit %s", out, version, commit)
		}
	})

	// crane and other go-containerregistry tools read both spellings:
	// `crane push` takes the tarball through manifest.json, and the
	// untarred directory as an OCI layout.
	t.Run("go-containerregistry readers", func(t *testing.T) {
		img, err := tarball.ImageFromPath(archive, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfgName, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		if cfgName.String() != u.manifest.Config.Digest {
			t.Errorf("as a tarball: config %s, want %s", cfgName, u.manifest.Config.Digest)
		}
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for i, l := range layers {
			d, err := l.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if i >= len(u.manifest.Layers) || d.String() != u.manifest.Layers[i].Digest {
				t.Errorf("as a tarball: layer %d is %s", i, d)
			}
		}
		idx, err := layout.ImageIndexFromPath(u.extract(t))
		if err != nil {
			t.Fatal(err)
		}
		h, err := v1.NewHash(res.Digest)
		if err != nil {
			t.Fatal(err)
		}
		limg, err := idx.Image(h)
		if err != nil {
			t.Fatal(err)
		}
		if err := validate.Image(limg); err != nil {
			t.Errorf("as an OCI layout: %v", err)
		}
	})

	// docs/image.md's way to push: `crane push` of the unpacked archive,
	// done here as crane does it (cmd/crane's push reads a directory as
	// an OCI layout, takes its one image and remote.Writes it) into an
	// in-memory registry. The registry must store the manifest the
	// builder printed, byte for byte: deployments pin that digest. The
	// tarball path, crane's other, is checked to give another digest,
	// which is why the docs say not to push the archive as it is.
	t.Run("push", func(t *testing.T) {
		srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		t.Cleanup(srv.Close)
		host := strings.TrimPrefix(srv.URL, "http://")

		l, err := layout.ImageIndexFromPath(u.extract(t))
		if err != nil {
			t.Fatal(err)
		}
		im, err := l.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(im.Manifests) != 1 || !im.Manifests[0].MediaType.IsImage() {
			t.Fatalf("the layout has %+v; crane push without --index wants one image", im.Manifests)
		}
		img, err := l.Image(im.Manifests[0].Digest)
		if err != nil {
			t.Fatal(err)
		}
		tag, err := name.ParseReference(host + "/confgate:" + tagFor(res.Version))
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(tag, img, remote.WithContext(t.Context())); err != nil {
			t.Fatal(err)
		}
		pushed, err := remote.Get(tag, remote.WithContext(t.Context()))
		if err != nil {
			t.Fatal(err)
		}
		if pushed.Digest.String() != res.Digest {
			t.Errorf("the registry has %s under the tag, the builder printed %s", pushed.Digest, res.Digest)
		}
		if want := u.blob(t, md); !bytes.Equal(pushed.Manifest, want) {
			t.Errorf("the registry stored another manifest:\n%s\nwant the archive's:\n%s", pushed.Manifest, want)
		}
		// A deployment pins the digest: pulling by it must work.
		byDigest, err := name.ParseReference(host + "/confgate@" + res.Digest)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := remote.Image(byDigest, remote.WithContext(t.Context())); err != nil {
			t.Errorf("pull by the printed digest: %v", err)
		}

		fromTar, err := tarball.ImageFromPath(archive, nil)
		if err != nil {
			t.Fatal(err)
		}
		tarTag, err := name.ParseReference(host + "/confgate:from-tarball")
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(tarTag, fromTar, remote.WithContext(t.Context())); err != nil {
			t.Fatal(err)
		}
		tarDesc, err := remote.Head(tarTag, remote.WithContext(t.Context()))
		if err != nil {
			t.Fatal(err)
		}
		if tarDesc.Digest.String() == res.Digest || tarDesc.MediaType != types.DockerManifestSchema2 {
			t.Errorf("pushed as a tarball: %s %s; docs/image.md says that path writes a Docker manifest under another digest", tarDesc.MediaType, tarDesc.Digest)
		}
	})

	t.Run("docs", func(t *testing.T) {
		rows := docTable(t, filepath.Join(moduleRoot, "docs", "image.md"))
		set := func(s []string) string { return fmt.Sprint(slices.Sorted(slices.Values(s))) }
		for _, tc := range []struct{ field, got string }{
			{"User", fmt.Sprint([]string{c.User})},
			{"Entrypoint", fmt.Sprint(c.Entrypoint)},
			{"Cmd", fmt.Sprint(c.Cmd)},
			{"ExposedPorts", set(slices.Collect(maps.Keys(c.ExposedPorts)))},
			{"Env", set(c.Env)},
		} {
			doc, ok := rows[tc.field]
			if !ok {
				t.Errorf("docs/image.md has no %s row", tc.field)
				continue
			}
			want := fmt.Sprint(doc)
			if tc.field == "ExposedPorts" || tc.field == "Env" {
				want = set(doc)
			}
			if tc.got != want {
				t.Errorf("docs/image.md says %s is %s; the image has %s", tc.field, want, tc.got)
			}
		}
	})
}

// archLevel names the variable that sets an architecture's CPU level.
var archLevel = map[string]string{
	"amd64": "GOAMD64", "arm64": "GOARM64", "386": "GO386", "arm": "GOARM", "riscv64": "GORISCV64",
	"ppc64le": "GOPPC64", "ppc64": "GOPPC64", "mips": "GOMIPS", "mipsle": "GOMIPS", "mips64": "GOMIPS64", "mips64le": "GOMIPS64",
}

// toolchainDefault is the go command's value for key with no setting from
// the environment or a go env file.
func toolchainDefault(t *testing.T, key string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), "go", "env", key)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, key+"=") && !strings.HasPrefix(kv, "GOENV=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GOENV=off", "GOTOOLCHAIN=local")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go env %s: %v", key, err)
	}
	return strings.TrimSpace(string(out))
}

var elfMachine = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "386": elf.EM_386, "arm": elf.EM_ARM,
	"riscv64": elf.EM_RISCV, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "loong64": elf.EM_LOONGARCH,
}

// writableBy says whether uid:gid may write h's file (a directory: create
// and remove entries in it).
func writableBy(h *tar.Header, uid, gid int) bool {
	switch {
	case h.Uid == uid:
		return h.Mode&0o200 != 0
	case h.Gid == gid:
		return h.Mode&0o020 != 0
	default:
		return h.Mode&0o002 != 0
	}
}

// readDB reads a colon-separated file (passwd, group) of n fields a line.
func readDB(t *testing.T, file string, n int) [][]string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Split(line, ":")
		if len(f) != n {
			t.Fatalf("%s: line %q has %d fields, want %d", file, line, len(f), n)
		}
		rows = append(rows, f)
	}
	return rows
}

var codeSpanRe = regexp.MustCompile("`([^`]+)`")

// docTable reads the rows of the doc's table of image settings: a row
// "| Field | `v1`, `v2` (prose) |" gives Field -> [v1 v2].
func docTable(t *testing.T, file string) map[string][]string {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fields := map[string]bool{"User": true, "Entrypoint": true, "Cmd": true, "ExposedPorts": true, "Env": true}
	rows := map[string][]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cells := strings.Split(strings.Trim(strings.TrimSpace(sc.Text()), "|"), "|")
		if len(cells) < 2 {
			continue
		}
		field := strings.TrimSpace(cells[0])
		if !fields[field] {
			continue
		}
		if _, dup := rows[field]; dup {
			t.Fatalf("%s: two %s rows", file, field)
		}
		var vals []string
		for _, m := range codeSpanRe.FindAllStringSubmatch(cells[1], -1) {
			vals = append(vals, m[1])
		}
		rows[field] = vals
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return rows
}

// Two builds of one commit are the same image, byte for byte. The second
// binary comes from Go's build cache; that a fresh compile gives the
// same bytes is the Go toolchain's reproducible-build guarantee with
// -trimpath, which this test does not re-prove.
func TestImageReproducible(t *testing.T) {
	first, res1 := sharedImage(t)
	second, res2 := buildImage(t, t.TempDir())
	if res1.Digest != res2.Digest {
		t.Errorf("manifest digests %s and %s", res1.Digest, res2.Digest)
	}
	for _, p := range []string{first, second} {
		u := unpack(t, p)
		if d := u.index.Manifests[0].Digest; d != res1.Digest {
			t.Errorf("%s: index.json points at %s, want %s", p, d, res1.Digest)
		}
	}
	a, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(second)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("the two archives differ (%d and %d bytes)", len(a), len(b))
	}
}

// The caller's Go settings do not reach the build: with settings in the
// environment and in a `go env -w` file that would each change the binary
// or fail the build (GOFLAGS=-race needs cgo; GOTOOLCHAIN names a
// toolchain that does not exist; GOWORK a file that does not), the image
// is the one a clean environment builds, byte for byte.
func TestImageIgnoresEnvironment(t *testing.T) {
	clean, res := sharedImage(t)

	dir := t.TempDir()
	goenv := filepath.Join(dir, "go-env")
	if err := os.WriteFile(goenv, []byte("GOFLAGS=-tags=confgate_env_test\nGOEXPERIMENT=arenas\nGOPROXY=off\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{
		"GOENV":       goenv,
		"GOFLAGS":     "-race",
		"GOAMD64":     "v3",
		"GOARM64":     "v8.1",
		"CGO_ENABLED": "1",
		"GOOS":        "windows",
		"GOWORK":      filepath.Join(dir, "missing", "go.work"),
		"GOTOOLCHAIN": "go1.99.0",
		"GODEBUG":     "gotypesalias=0",
	} {
		t.Setenv(k, v)
	}
	// The settings are live: a go command run here sees them.
	probe := exec.CommandContext(t.Context(), "go", "env", "-json", "GOFLAGS", "GOEXPERIMENT", "CGO_ENABLED", "GOWORK")
	probe.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	out, err := probe.Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	var live map[string]string
	decode(t, "go env", out, &live)
	if live["GOFLAGS"] != "-race" || live["GOEXPERIMENT"] != "arenas" || live["CGO_ENABLED"] != "1" || live["GOWORK"] == "" {
		t.Fatalf("go env in the test's environment says %v; the settings did not take", live)
	}

	archive, got := buildImage(t, t.TempDir())
	if got.Digest != res.Digest {
		t.Errorf("digest %s with the caller's settings, %s without", got.Digest, res.Digest)
	}
	a, err := os.ReadFile(clean)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Errorf("the archives differ (%d and %d bytes)", len(a), len(b))
	}
}
