package ociimage

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// dockerManifest is one entry of manifest.json, the index of `docker save`
// archives. Docker's classic image store loads only archives that have it;
// `docker save` itself writes it next to the OCI layout since Docker 25,
// and OCI tools ignore it.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

func blobPath(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }

// writeArchive puts the OCI layout in dir, plus manifest.json, into a tar
// at out: fixed order, times and owners, so equal layouts give equal
// archives. It writes a temporary file next to out and renames it.
func writeArchive(dir string, img v1.Image, dockerRef string, mtime time.Time, out string) (err error) {
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	dm := []dockerManifest{{Config: blobPath(m.Config.Digest), RepoTags: []string{dockerRef}}}
	for _, l := range m.Layers {
		dm[0].Layers = append(dm[0].Layers, blobPath(l.Digest))
	}
	dmJSON, err := json.Marshal(dm)
	if err != nil {
		return err
	}

	blobs, err := os.ReadDir(filepath.Join(dir, "blobs", "sha256"))
	if err != nil {
		return fmt.Errorf("ociimage: layout: %w", err)
	}
	var names []string
	for _, b := range blobs {
		names = append(names, "blobs/sha256/"+b.Name())
	}
	slices.Sort(names)

	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(out), filepath.Base(out)+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()

	tw := tar.NewWriter(f)
	mt := mtime.UTC().Truncate(time.Second)
	file := func(name string, size int64, r io.Reader) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: size, ModTime: mt}); err != nil {
			return err
		}
		_, err := io.Copy(tw, r)
		return err
	}
	fromLayout := func(name string) error {
		src, err := os.Open(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			return err
		}
		defer src.Close()
		st, err := src.Stat()
		if err != nil {
			return err
		}
		return file(name, st.Size(), src)
	}
	for _, name := range []string{"oci-layout", "index.json"} {
		if err := fromLayout(name); err != nil {
			return fmt.Errorf("ociimage: archive %s: %w", name, err)
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "manifest.json", Mode: 0o644, Size: int64(len(dmJSON)), ModTime: mt}); err != nil {
		return err
	}
	if _, err := tw.Write(dmJSON); err != nil {
		return err
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: mt}); err != nil {
			return err
		}
	}
	for _, name := range names {
		if err := fromLayout(name); err != nil {
			return fmt.Errorf("ociimage: archive %s: %w", name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), out)
}
