package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The user database: root (owner of every file but the two below) and
// nonroot, the user the image runs as. Tools that print or resolve the
// user (ps, id in a debug container, os/user) find names, and programs
// that want a home directory get one they can write.
const (
	passwd = "root:x:0:0:root:/root:/sbin/nologin\n" +
		"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
	group = "root:x:0:\n" +
		"nonroot:x:65532:\n"
)

// entry is one file or directory of a layer. Paths are relative to / with
// no leading slash; a directory's ends in "/".
type entry struct {
	path     string
	mode     int64
	uid, gid int
	data     []byte
}

// baseLayer holds what every confgate image has besides the binary. The
// CA bundle is left out when caCerts is nil. /tmp is world-writable with
// the sticky bit, as everywhere: Go's os.TempDir, and so anything that
// spills to a temporary file, needs it.
func baseLayer(caCerts []byte, mtime time.Time) ([]byte, error) {
	es := []entry{
		{path: "etc/", mode: 0o755},
		{path: "etc/group", mode: 0o644, data: []byte(group)},
		{path: "etc/passwd", mode: 0o644, data: []byte(passwd)},
	}
	if caCerts != nil {
		es = append(es,
			entry{path: "etc/ssl/", mode: 0o755},
			entry{path: "etc/ssl/certs/", mode: 0o755},
			entry{path: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, data: caCerts},
		)
	}
	es = append(es,
		entry{path: "home/", mode: 0o755},
		entry{path: "home/nonroot/", mode: 0o700, uid: UID, gid: GID},
		entry{path: "tmp/", mode: 0o1777},
	)
	return layerTar(es, mtime)
}

// binaryLayer holds the binary, root-owned and not writable by the user
// the image runs as: a compromised gateway cannot replace itself.
func binaryLayer(binary []byte, mtime time.Time) ([]byte, error) {
	return layerTar([]entry{
		{path: "usr/", mode: 0o755},
		{path: "usr/local/", mode: 0o755},
		{path: "usr/local/bin/", mode: 0o755},
		{path: strings.TrimPrefix(BinaryPath, "/"), mode: 0o755, data: binary},
	}, mtime)
}

// layerTar writes entries in the given order with fixed times and numeric
// owners only, so the layer's bytes, and its digest, depend on nothing but
// the entries and mtime.
func layerTar(es []entry, mtime time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := &tar.Header{
			Name:    e.path,
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: mtime.UTC().Truncate(time.Second),
		}
		if strings.HasSuffix(e.path, "/") {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("ociimage: layer %s: %w", e.path, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, fmt.Errorf("ociimage: layer %s: %w", e.path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func opener(b []byte) tarball.Opener {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}
