package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
)

// parseCursorFlag reads a cursor given on the command line; empty is none.
func parseCursorFlag(cmd *cobra.Command, flag, s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	c, err := cursor.Parse(s)
	if err != nil {
		return nil, usagef(cmd, "--%s: %v", flag, err)
	}
	return c.Encode(), nil
}

func newGetCmd(g *globals) *cobra.Command {
	var (
		minCursor string
		raw       bool
	)
	cmd := &cobra.Command{
		Use:   "get KEY",
		Short: "Print the value of a key",
		Long: `Print the value of a key.

Text output is the value itself (followed by a newline when it is UTF-8 text),
so $(confgate get KEY) is the value. On a terminal, a value that holds control
characters other than tab and newline, invisible or formatting characters
(such as bidirectional controls) or bytes that are not UTF-8 is shown on one
line instead, Go-quoted or as "(base64) ...", with a note on stderr: the
terminal cannot be made to act on it or to show something else. --raw prints
the bytes as they are, as does any output that is not a terminal (a pipe or
a file). JSON output is one object with key, value (base64 with
"value_encoding":"base64" when not UTF-8), content_type, headers, version
{partition, offset} and the cursor the entry was read at; such characters
are escaped as \uXXXX in it.

A missing key prints an error and exits with status 1.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			req := &confgatev1.GetRequest{Key: key}
			var err error
			if req.MinCursor, err = parseCursorFlag(cmd, "min-cursor", minCursor); err != nil {
				return err
			}
			ctx, cancel := g.callContext(cmd.Context())
			defer cancel()
			var resp *confgatev1.GetResponse
			err = g.callFirst(ctx, true, func(ctx context.Context, c confgatev1.ConfigServiceClient) error {
				var err error
				resp, err = c.Get(ctx, req)
				return err
			})
			if errCode(err) == codes.NotFound {
				return &codeError{exitNotFound, fmt.Errorf("key %s not found", keyspace.Quote(key))}
			}
			if err != nil {
				return err
			}
			p := newPrinter(g.env.Stdout)
			if g.json() {
				return p.JSON(entryJSON("", resp.GetEntry(), resp.GetCursor()))
			}
			v := resp.GetEntry().GetValue()
			if !raw && isTerminal(g.env.Stdout) && !terminalSafe(v) {
				fmt.Fprintf(g.env.Stderr, "confgate: the value of %s holds characters a terminal would act on or hide (or is not UTF-8): shown on one line, escaped; --raw prints it as is\n", keyspace.Quote(key))
				return p.Linef("%s", displayValue(v))
			}
			if err := p.Raw(v); err != nil {
				return err
			}
			if utf8.Valid(v) {
				return p.Raw([]byte{'\n'})
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&minCursor, "min-cursor", "", "read-your-writes: the gateway first waits (bounded) until it has applied this cursor, as printed by put or delete")
	cmd.Flags().BoolVar(&raw, "raw", false, "print the value's bytes as they are, also on a terminal (by default a terminal gets control, invisible and formatting characters escaped)")
	return cmd
}

func newPutCmd(g *globals) *cobra.Command {
	var (
		contentType string
		headers     []string
		wait        bool
	)
	cmd := &cobra.Command{
		Use:   "put KEY VALUE",
		Short: "Write a value (VALUE - reads standard input)",
		Long: `Write a value to a key. The gateway answers once Kafka acknowledged the write
with acks=all. VALUE - reads all of standard input, for files and binary values:

  confgate put search/ranking/weights - --content-type application/json < weights.json

Prints the new version and a cursor that includes the write
(partition=P offset=O cursor=C); pass the cursor to get --min-cursor or
watch --from to read the write back from any gateway.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			value := []byte(args[1])
			if args[1] == "-" {
				var err error
				if value, err = io.ReadAll(g.env.Stdin); err != nil {
					return fmt.Errorf("read the value from standard input: %w", err)
				}
			}
			req := &confgatev1.PutRequest{Key: key, Value: value, ContentType: contentType, WaitApplied: wait}
			for _, h := range headers {
				k, v, ok := strings.Cut(h, "=")
				if !ok || k == "" {
					return usagef(cmd, "--header %q: want key=value", h)
				}
				req.Headers = append(req.Headers, &confgatev1.Header{Key: k, Value: []byte(v)})
			}
			ctx, cancel := g.callContext(cmd.Context())
			defer cancel()
			var resp *confgatev1.PutResponse
			err := g.callFirst(ctx, false, func(ctx context.Context, c confgatev1.ConfigServiceClient) error {
				var err error
				resp, err = c.Put(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return printWrite(newPrinter(g.env.Stdout), g.json(), key, resp.GetVersion(), resp.GetCursor())
		},
	}
	f := cmd.Flags()
	f.StringVar(&contentType, "content-type", "", "content type stored with the value (the record's content-type header), e.g. application/json")
	f.StringArrayVar(&headers, "header", nil, "extra record header key=value; repeat for several")
	f.BoolVar(&wait, "wait", false, "answer only once the gateway has applied the write, so a read from it right after sees it")
	return cmd
}

func newDeleteCmd(g *globals) *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "delete KEY",
		Short: "Delete a key",
		Long: `Delete a key: writes a tombstone, acknowledged by Kafka with acks=all.
Prints the tombstone's version and a cursor that includes it
(partition=P offset=O cursor=C). Deleting a missing key is not an error.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			key := args[0]
			req := &confgatev1.DeleteRequest{Key: key, WaitApplied: wait}
			ctx, cancel := g.callContext(cmd.Context())
			defer cancel()
			var resp *confgatev1.DeleteResponse
			err := g.callFirst(ctx, false, func(ctx context.Context, c confgatev1.ConfigServiceClient) error {
				var err error
				resp, err = c.Delete(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return printWrite(newPrinter(g.env.Stdout), g.json(), key, resp.GetVersion(), resp.GetCursor())
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "answer only once the gateway has applied the delete")
	return cmd
}
