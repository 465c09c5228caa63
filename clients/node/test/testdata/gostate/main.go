// Command gostate loads or writes a confgate state file with the Go client
// (client.Config.StateFile), for the Node client's test that the two read
// each other's files (clients/node/test/crosslang.test.js). It is built by
// scripts/polyglot-test.sh; under testdata/, go ./... patterns skip it.
//
//	gostate -file F -prefix P -addr A   subscribes through the gateway at A,
//	                                    waits for the snapshot and closes:
//	                                    the client writes F
//	gostate -file F -prefix P           loads F while no gateway answers
//
// Either way it prints the view as one JSON object (int64 offsets as
// decimal strings, bytes in base64) and exits non-zero when the file was
// not written or not loaded.
package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
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
	ContentType string   `json:"contentType"`
	Headers     []header `json:"headers"`
}

type view struct {
	Cursor   string  `json:"cursor"`
	Digest   string  `json:"digest"`
	FromFile bool    `json:"fromFile"`
	Entries  []entry `json:"entries"`
}

func main() {
	file := flag.String("file", "", "the state file")
	prefix := flag.String("prefix", "", "the selector's prefix")
	addr := flag.String("addr", "", "a gateway: write the file; none: load it")
	flag.Parse()
	if err := run(*file, *prefix, *addr); err != nil {
		fmt.Fprintln(os.Stderr, "gostate:", err)
		os.Exit(1)
	}
}

func run(file, prefix, addr string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	load := addr == ""
	if load {
		// An address nobody serves: the view can only come from the file.
		addr = "unix:" + filepath.Join(os.TempDir(), fmt.Sprintf("gostate-%d-nobody.sock", os.Getpid()))
	}
	v, err := client.Subscribe(ctx, client.Config{
		Addrs:          []string{addr},
		Prefixes:       []string{prefix},
		StateFile:      file,
		ReportInterval: -1,
	})
	if err != nil {
		return err
	}
	if err := v.Status().StateFileError; err != nil {
		v.Close()
		return err
	}
	if load {
		err = v.WaitLoaded(ctx)
	} else {
		err = v.WaitSynced(ctx)
	}
	if err != nil {
		v.Close()
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
	v.Close() // the last write of the file
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
