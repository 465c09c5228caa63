// Command gostatefile is a test tool, not a product: it makes the Go client
// (client.Config.StateFile) write or load a state file, so that the Python
// and Node clients' tests can check that each client reads the files the
// other writes, and that both write the same bytes for the same view
// (clients/python/tests/test_statefile_go.py,
// clients/node/test/crosslang.test.js). scripts/polyglot-test.sh builds it
// once and names it to both suites in CONFGATE_GOSTATEFILE.
//
//	gostatefile -mode write -addr ADDR -prefix P -file F
//	gostatefile -mode read -prefix P -file F
//
// write subscribes through the gateway at ADDR, waits for the first
// snapshot and closes: Close writes F. read subscribes with F and an
// address nobody serves, so the view can only come from the file.
//
// Either way it prints the view as one JSON object and exits 0, or exits
// non-zero with the reason on stderr when the file was not written or not
// loaded. The object, with the project's snake_case names:
//
//	{"cursor": "...", "digest": "<hex>", "from_file": true,
//	 "entries": [{"key": "...", "value": "<base64>", "partition": 0,
//	              "offset": "42", "content_type": "...",
//	              "headers": [{"key": "...", "value": "<base64>"}]}]}
//
// Entries are in key order (bytewise). An offset is an int64, printed as a
// decimal string: a JSON number loses precision above 2^53 in JavaScript.
// An empty value is "" rather than null.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/confgate/confgate/client"
)

type header struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

type entry struct {
	Key         string   `json:"key"`
	Value       []byte   `json:"value"`
	Partition   int32    `json:"partition"`
	Offset      string   `json:"offset"`
	ContentType string   `json:"content_type"`
	Headers     []header `json:"headers"`
}

type view struct {
	Cursor   string  `json:"cursor"`
	Digest   string  `json:"digest"`
	FromFile bool    `json:"from_file"`
	Entries  []entry `json:"entries"`
}

const usage = "usage: gostatefile -mode write -addr ADDR -prefix P -file F | -mode read -prefix P -file F"

func main() {
	mode := flag.String("mode", "", "write: subscribe through -addr and write -file; read: load -file")
	addr := flag.String("addr", "", "the gateway (write only)")
	prefix := flag.String("prefix", "", "the selector's prefix")
	file := flag.String("file", "", "the state file")
	flag.Parse()
	if err := run(*mode, *addr, *prefix, *file); err != nil {
		fmt.Fprintln(os.Stderr, "gostatefile:", err)
		os.Exit(1)
	}
}

func run(mode, addr, prefix, file string) error {
	// An explicit mode, so that a forgotten -addr cannot turn a write into
	// a read that passes by loading a file left from an earlier run.
	switch {
	case file == "" || flag.NArg() > 0:
		return errors.New(usage)
	case mode == "write" && addr == "":
		return errors.New(usage)
	case mode == "read" && addr != "":
		return errors.New(usage)
	case mode == "read":
		// A socket path nobody listens on: the view can only come from the file.
		addr = "unix:" + filepath.Join(os.TempDir(), fmt.Sprintf("gostatefile-%d-nobody.sock", os.Getpid()))
	case mode != "write":
		return errors.New(usage)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := client.Subscribe(ctx, client.Config{
		Addrs:          []string{addr},
		Prefixes:       []string{prefix},
		StateFile:      file,
		ReportInterval: -1,
	})
	if err != nil {
		return err
	}
	defer v.Close()
	// Subscribe loads the file; a file it rejected or did not find fails
	// here rather than after the timeout, waiting for a gateway.
	if err := v.Status().StateFileError; err != nil {
		return err
	}
	if mode == "read" {
		if !v.Status().FromFile {
			return fmt.Errorf("%s was not loaded (no such file?)", file)
		}
		err = v.WaitLoaded(ctx)
	} else {
		err = v.WaitSynced(ctx)
	}
	if err != nil {
		return err
	}
	out := view{Cursor: v.Cursor(), Digest: hex.EncodeToString(v.Digest()), FromFile: v.Status().FromFile, Entries: []entry{}}
	v.Range("", func(e client.Entry) bool {
		hs := []header{}
		for _, h := range e.Headers {
			hs = append(hs, header{Key: h.Key, Value: nonNil(h.Value)})
		}
		out.Entries = append(out.Entries, entry{
			Key: e.Key, Value: nonNil(e.Value), Partition: e.Partition, Offset: strconv.FormatInt(e.Offset, 10),
			ContentType: e.ContentType, Headers: hs,
		})
		return true
	})
	_ = v.Close() // with a state file, Close returns after the last write
	if err := v.Status().StateFileError; err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// nonNil makes an empty value print as "" rather than null.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
