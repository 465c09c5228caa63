// Package buildinfo says which confgate this is: the version and commit
// stamped in at link time (make image, release builds) or, failing that,
// what the Go toolchain recorded from the checkout it built, plus the Go
// version. `confgate version` prints it and every node exports it as the
// confgate_build_info metric.
package buildinfo
