//go:build unix

package gateway

import "syscall"

// fdLimit is the process's soft RLIMIT_NOFILE, 0 when unknown. The Go
// runtime raises it to the hard limit at start, and so does confgate serve.
func fdLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	return uint64(lim.Cur)
}
