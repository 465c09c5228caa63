// Package docscheck holds the docs drift check, a test run by go test ./...
// and make lint: every test README.md and docs/*.md cite exists (in the
// package they name it in, where they name one), every relative link and
// repository path they mention resolves, and none points at files outside
// the repository (the docs stand alone). It reads files only: no network,
// well under a second.
package docscheck
