package main

import (
	"fmt"
	"os"
)

func main() {
	if isServeMode(os.Args[1:]) {
		os.Exit(serveMain(os.Args[1:]))
	}
	fmt.Fprintln(os.Stderr, "peers: runner to follow")
	os.Exit(2)
}
