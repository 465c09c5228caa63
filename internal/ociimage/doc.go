// Package ociimage builds the confgate container image without a Docker
// daemon and without a registry: it compiles a static confgate binary,
// assembles an image from an empty base with go-containerregistry and
// writes it as an OCI image layout in a tar file (what `make image` runs,
// through ./cmd/build; docs/image.md describes the result).
//
// It owns the image's contents and configuration: the files (binary, a
// minimal /etc/passwd and /etc/group for the non-root user, CA
// certificates, /tmp), the user, entrypoint, ports, environment and OCI
// labels. Everything in the image is derived from the source tree, the
// commit, the Go toolchain and the CA bundle, so two builds of one commit
// with the same toolchain and bundle give the same digest. The go build
// runs in an environment the builder sets (goenv.go): the caller's Go
// settings (GOFLAGS, GOAMD64, GOEXPERIMENT, a go env -w file, ...) never
// reach it.
//
// It must never pull a base image, talk to a registry or a container
// daemon, or embed the time of the build: the only clock is the commit's.
package ociimage
