// Command gostatefile is a test helper of the Python client's tests
// (clients/python/tests/test_statefile_go.py): it makes the Go client write
// or read a state file, so that the tests can check that a file written by
// one client is read by the other.
//
//	gostatefile -mode write -addr ADDR -prefix P -file F
//	gostatefile -mode read -addr UNREACHABLE -prefix P -file F
//
// write subscribes with Config.StateFile, waits until synced and closes
// (Close writes the file); read subscribes with the file and an address
// nobody serves, waits until loaded and prints the view. Both print the
// view as one JSON object: cursor, digest (hex), from_file,
// state_file_error, and the entries in key order.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
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
	Offset      int64    `json:"offset"`
	ContentType string   `json:"content_type"`
	Headers     []header `json:"headers"`
}

type output struct {
	Cursor         string  `json:"cursor"`
	Digest         string  `json:"digest"`
	FromFile       bool    `json:"from_file"`
	StateFileError string  `json:"state_file_error"`
	Entries        []entry `json:"entries"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "gostatefile:", err)
		os.Exit(1)
	}
}

func run() error {
	mode := flag.String("mode", "", "write or read")
	addr := flag.String("addr", "", "gateway address")
	prefix := flag.String("prefix", "", "the selector's prefix")
	file := flag.String("file", "", "the state file")
	flag.Parse()
	if *addr == "" || *file == "" || (*mode != "write" && *mode != "read") {
		return fmt.Errorf("usage: gostatefile -mode write|read -addr ADDR -prefix P -file F")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	v, err := client.Subscribe(ctx, client.Config{
		Addrs:          []string{*addr},
		Prefixes:       []string{*prefix},
		StateFile:      *file,
		ReportInterval: -1,
		Logger:         slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	if *mode == "write" {
		err = v.WaitSynced(ctx)
	} else {
		err = v.WaitLoaded(ctx)
	}
	if err != nil {
		_ = v.Close()
		return err
	}
	out := output{Cursor: v.Cursor(), Digest: hex.EncodeToString(v.Digest()), FromFile: v.Status().FromFile,
		Entries: []entry{}}
	v.Range("", func(e client.Entry) bool {
		hs := []header{}
		for _, h := range e.Headers {
			hs = append(hs, header{h.Key, h.Value})
		}
		out.Entries = append(out.Entries, entry{e.Key, e.Value, e.Partition, e.Offset, e.ContentType, hs})
		return true
	})
	_ = v.Close() // with a state file, Close returns after the last write
	if err := v.Status().StateFileError; err != nil {
		out.StateFileError = err.Error()
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
