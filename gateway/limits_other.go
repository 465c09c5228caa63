//go:build !unix

package gateway

// fdLimit is 0 (unknown) where there is no RLIMIT_NOFILE: no connection
// bound is derived, set Config.MaxConnections.
func fdLimit() uint64 { return 0 }
