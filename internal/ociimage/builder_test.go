package ociimage

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestTagFor(t *testing.T) {
	for _, tc := range []struct{ version, want string }{
		{"v0.3.0", "v0.3.0"},
		{"v0.3.0-4-g8347e74-dirty", "v0.3.0-4-g8347e74-dirty"},
		{"8347e74", "8347e74"},
		{"v1.2.3+build.5", "v1.2.3-build.5"},
		{"release/1.2", "release-1.2"},
		{".hidden", "hidden"},
		{"-x", "x"},
		{strings.Repeat("a", 200), strings.Repeat("a", 128)},
		{"+", ""},
	} {
		t.Run(tc.version, func(t *testing.T) {
			if got := tagFor(tc.version); got != tc.want {
				t.Fatalf("tagFor(%q) = %q, want %q", tc.version, got, tc.want)
			}
		})
	}
}

func TestReference(t *testing.T) {
	for _, tc := range []struct {
		name, repository, version string
		full, docker              string
		err                       bool
	}{
		{"default", DefaultRepository, "v0.3.0", "docker.io/confgate/confgate:v0.3.0", "confgate/confgate:v0.3.0", false},
		{"official image style", "confgate", "v1", "docker.io/library/confgate:v1", "confgate:v1", false},
		{"own registry", "registry.example:5000/team/confgate", "v1+meta", "registry.example:5000/team/confgate:v1-meta", "registry.example:5000/team/confgate:v1-meta", false},
		{"upper case", "Confgate/Confgate", "v1", "", "", true},
		{"tag in the repository", "confgate/confgate:latest", "v1", "", "", true},
		{"no tag left", DefaultRepository, "++", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := reference(tc.repository, tc.version)
			if tc.err {
				if err == nil {
					t.Fatalf("reference(%q, %q) = %+v, want an error", tc.repository, tc.version, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.full != tc.full || got.docker != tc.docker {
				t.Fatalf("reference(%q, %q) = %+v, want full %q, docker %q", tc.repository, tc.version, got, tc.full, tc.docker)
			}
		})
	}
}

// header is what the layer tests compare of a tar entry.
type header struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	data     string
}

func readLayer(t *testing.T, b []byte, mtime time.Time) []header {
	t.Helper()
	var hs []header
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return hs
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(mtime) {
			t.Errorf("%s: mtime %v, want %v", h.Name, h.ModTime, mtime)
		}
		if h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: owner names %q:%q, want numeric owners only", h.Name, h.Uname, h.Gname)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, header{h.Name, h.Typeflag, h.Mode, h.Uid, h.Gid, string(data)})
	}
}

func TestLayers(t *testing.T) {
	mtime := time.Date(2026, 11, 30, 18, 35, 38, 0, time.UTC)
	dir := func(name string, mode int64) header { return header{name, tar.TypeDir, mode, 0, 0, ""} }
	file := func(name string, mode int64, data string) header { return header{name, tar.TypeReg, mode, 0, 0, data} }
	home := header{"home/nonroot/", tar.TypeDir, 0o700, UID, GID, ""}
	for _, tc := range []struct {
		name  string
		build func() ([]byte, error)
		want  []header
	}{
		{"base with CA certificates", func() ([]byte, error) { return baseLayer([]byte("PEM"), mtime) }, []header{
			dir("etc/", 0o755), file("etc/group", 0o644, group), file("etc/passwd", 0o644, passwd),
			dir("etc/ssl/", 0o755), dir("etc/ssl/certs/", 0o755), file("etc/ssl/certs/ca-certificates.crt", 0o644, "PEM"),
			dir("home/", 0o755), home, dir("tmp/", 0o1777),
		}},
		{"base without", func() ([]byte, error) { return baseLayer(nil, mtime) }, []header{
			dir("etc/", 0o755), file("etc/group", 0o644, group), file("etc/passwd", 0o644, passwd),
			dir("home/", 0o755), home, dir("tmp/", 0o1777),
		}},
		{"binary", func() ([]byte, error) { return binaryLayer([]byte("ELF"), mtime) }, []header{
			dir("usr/", 0o755), dir("usr/local/", 0o755), dir("usr/local/bin/", 0o755),
			file("usr/local/bin/confgate", 0o755, "ELF"),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.build()
			if err != nil {
				t.Fatal(err)
			}
			got := readLayer(t, b, mtime)
			if len(got) != len(tc.want) {
				t.Fatalf("entries:\n  %v\nwant:\n  %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("entry %d = %+v, want %+v", i, got[i], tc.want[i])
				}
			}
			again, err := tc.build()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, again) {
				t.Error("two builds of the same layer differ")
			}
		})
	}
}

// The user database names the image's User and gives it a home.
func TestPasswd(t *testing.T) {
	uid, gid, ok := strings.Cut(User, ":")
	if !ok {
		t.Fatalf("User %q is not uid:gid", User)
	}
	var found bool
	for _, line := range strings.Split(strings.TrimSpace(passwd), "\n") {
		f := strings.Split(line, ":")
		if len(f) != 7 {
			t.Fatalf("passwd line %q has %d fields, want 7", line, len(f))
		}
		if f[2] == uid {
			found = true
			if f[0] != "nonroot" || f[3] != gid || f[5] != "/home/nonroot" {
				t.Errorf("passwd line %q: want nonroot, group %s, home /home/nonroot", line, gid)
			}
		}
	}
	if !found {
		t.Errorf("passwd has no user %s", uid)
	}
	if !strings.Contains(group, "nonroot:x:"+gid+":") {
		t.Errorf("group has no group %s", gid)
	}
}
