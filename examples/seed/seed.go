package seed

import _ "embed"

// Sample is the seed `confgate dev` loads when no --seed file is given: the
// bytes of sample.json in this directory, embedded at build time, so the file
// a reader opens is the file the binary loads.
//
//go:embed sample.json
var Sample []byte
