//go:build unix

package main

import (
	"log/slog"
	"syscall"
)

// raiseNofile raises the soft open-file limit (RLIMIT_NOFILE) to the hard
// limit, where the system allows it, and logs what it did. Every gRPC
// connection costs a file descriptor, and by default the gateway bounds its
// connections by this limit (--max-connections 0). The Go runtime already
// raises the soft limit to one below the hard limit before main runs
// (go.dev/issue/46279); this takes the last one and says where it stands.
// Child processes would inherit the raised limit: the gateway starts none.
func raiseNofile(log *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("cannot read the open file limit (RLIMIT_NOFILE)", "err", err)
		return
	}
	soft, hard := uint64(lim.Cur), uint64(lim.Max)
	if soft >= hard {
		log.Info("open file limit (RLIMIT_NOFILE) is at its hard limit", "soft", soft, "hard", hard)
		return
	}
	nlim := lim
	nlim.Cur = nlim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nlim); err != nil {
		// macOS, for one, refuses more than kern.maxfilesperproc.
		log.Warn("cannot raise the open file limit (RLIMIT_NOFILE) to its hard limit; keeping it", "soft", soft, "hard", hard, "err", err)
		return
	}
	log.Info("raised the open file limit (RLIMIT_NOFILE) to its hard limit", "from", soft, "to", hard)
}
