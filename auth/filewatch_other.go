//go:build !unix

package auth

import "os"

// fileID is unknown here: size and modification time alone detect changes.
func fileID(os.FileInfo) (dev, ino uint64) { return 0, 0 }
