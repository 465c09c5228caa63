package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/confgate/confgate/internal/digest"
	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
)

// Output safety. Keys and values are data from whoever wrote them; printed
// as they are, an escape sequence in one can recolour, retitle or rewrite a
// terminal, and a bidirectional control or an invisible character can make
// what is shown differ from what is stored. So:
//   - text lines of snapshot and watch show keys and values on one line,
//     Go-quoted (keyspace.Quote: control, invisible, formatting and other
//     unprintable characters escaped) when they hold any such character;
//   - get prints the value's bytes as they are when stdout is not a
//     terminal (a pipe, a file, $(confgate get KEY)) or with --raw; on a
//     terminal it does so only for valid UTF-8 made of printable characters,
//     spaces, tabs and newlines, and otherwise prints the one-line form
//     (quoted, or "(base64) ..." when not UTF-8) with a note on stderr;
//   - JSON output escapes every such character as \uXXXX, which leaves the
//     JSON value unchanged.

// printer writes a verb's output: lines of text, or one JSON object per
// line.
type printer struct {
	w   io.Writer
	buf bytes.Buffer
	enc *json.Encoder
}

func newPrinter(w io.Writer) *printer {
	p := &printer{w: w}
	p.enc = json.NewEncoder(&p.buf)
	p.enc.SetEscapeHTML(false)
	return p
}

// JSON writes v as one line, with every character keyspace.Hidden rejects
// escaped: a terminal showing it is safe, and it decodes to the same value.
func (p *printer) JSON(v any) error {
	p.buf.Reset()
	if err := p.enc.Encode(v); err != nil {
		return err
	}
	_, err := p.w.Write(escapeHiddenJSON(p.buf.Bytes()))
	return err
}

// escapeHiddenJSON escapes, as \uXXXX, the characters of a JSON text that
// keyspace.Hidden rejects. Outside strings JSON is ASCII without controls,
// so they can only be inside strings, where the escape means the same.
func escapeHiddenJSON(b []byte) []byte {
	clean := true
	for _, r := range string(b) {
		if keyspace.Hidden(r) && r != '\n' {
			clean = false
			break
		}
	}
	if clean {
		return b
	}
	out := make([]byte, 0, len(b)+32)
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		switch {
		case r == '\n' || !keyspace.Hidden(r):
			out = append(out, b[i:i+n]...)
		case r > 0xffff:
			hi, lo := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, hi, lo)
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		i += n
	}
	return out
}

// isTerminal reports whether w is a terminal (a character device; a test
// writer says so with an IsTerminal method).
func isTerminal(w io.Writer) bool {
	switch f := w.(type) {
	case interface{ IsTerminal() bool }:
		return f.IsTerminal()
	case *os.File:
		fi, err := f.Stat()
		return err == nil && fi.Mode()&os.ModeCharDevice != 0
	}
	return false
}

// terminalSafe reports whether v can go to a terminal as it is: valid UTF-8
// of printable characters, spaces, tabs and newlines only.
func terminalSafe(v []byte) bool {
	if !utf8.Valid(v) {
		return false
	}
	for _, r := range string(v) {
		if r == '\n' || r == '\t' {
			continue
		}
		if keyspace.Hidden(r) || !(strconv.IsPrint(r) || unicode.Is(unicode.Zs, r)) {
			return false
		}
	}
	return true
}

// Linef writes one line of text.
func (p *printer) Linef(format string, args ...any) error {
	_, err := fmt.Fprintf(p.w, format+"\n", args...)
	return err
}

// Raw writes b as is.
func (p *printer) Raw(b []byte) error {
	_, err := p.w.Write(b)
	return err
}

// encodeValue is how every verb puts a value in JSON: the text itself when
// it is valid UTF-8, else standard base64 and encoding "base64".
func encodeValue(v []byte) (text, encoding string) {
	if utf8.Valid(v) {
		return string(v), ""
	}
	return base64.StdEncoding.EncodeToString(v), "base64"
}

// displayValue renders a value on one line of text output: as is when it is
// printable UTF-8, Go-quoted (keyspace.Quote) when it holds newlines, other
// control characters, or invisible, formatting or unprintable characters,
// and "(base64) ..." when it is not UTF-8.
func displayValue(v []byte) string {
	text, enc := encodeValue(v)
	if enc != "" {
		return "(base64) " + text
	}
	return displayText(text)
}

// displayKey renders a key in text output, like a value: as is, or quoted
// when it holds anything but printable characters (or starts with a quote,
// which would read as quoted).
func displayKey(k string) string {
	if strings.HasPrefix(k, `"`) {
		return keyspace.Quote(k)
	}
	return displayText(k)
}

func displayText(s string) string {
	for _, r := range s {
		if keyspace.Hidden(r) || !strconv.IsPrint(r) {
			return keyspace.Quote(s)
		}
	}
	return s
}

// cursorText is the text form of a wire cursor, as cursor.String prints and
// cursor.Parse reads it.
func cursorText(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// digestText is the text form of a state digest, as the admin endpoint
// /debug/state prints it.
func digestText(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// versionText is a compact version for text output: p3@12 is partition 3,
// offset 12.
func versionText(v *confgatev1.Version) string {
	return fmt.Sprintf("p%d@%d", v.GetPartition(), v.GetOffset())
}

type versionOut struct {
	Partition int32 `json:"partition"`
	Offset    int64 `json:"offset"`
}

func versionJSON(v *confgatev1.Version) versionOut {
	return versionOut{Partition: v.GetPartition(), Offset: v.GetOffset()}
}

type headerOut struct {
	Key           string `json:"key"`
	Value         string `json:"value"`
	ValueEncoding string `json:"value_encoding,omitempty"`
}

// entryOut is an entry, or a change to one, as a JSON line.
type entryOut struct {
	Op            string  `json:"op,omitempty"`
	Key           string  `json:"key"`
	Value         *string `json:"value,omitempty"`
	ValueEncoding string  `json:"value_encoding,omitempty"`
	ContentType   *string `json:"content_type,omitempty"`
	// Headers are the record headers other than content-type.
	Headers   []headerOut `json:"headers,omitempty"`
	Version   versionOut  `json:"version"`
	Cursor    string      `json:"cursor,omitempty"`
	Coalesced bool        `json:"coalesced,omitempty"`
}

// entryJSON is the JSON form of a live entry; cursor may be nil.
func entryJSON(op string, e *confgatev1.Entry, cursor []byte) entryOut {
	text, enc := encodeValue(e.GetValue())
	ct := e.GetContentType()
	out := entryOut{
		Op:            op,
		Key:           e.GetKey(),
		Value:         &text,
		ValueEncoding: enc,
		ContentType:   &ct,
		Version:       versionJSON(e.GetVersion()),
	}
	if len(cursor) > 0 {
		out.Cursor = cursorText(cursor)
	}
	for _, h := range e.GetHeaders() {
		if h.GetKey() == store.ContentTypeHeader {
			continue
		}
		v, venc := encodeValue(h.GetValue())
		out.Headers = append(out.Headers, headerOut{Key: h.GetKey(), Value: v, ValueEncoding: venc})
	}
	return out
}

// writeOut is the answer to put and delete.
type writeOut struct {
	Key     string     `json:"key"`
	Version versionOut `json:"version"`
	Cursor  string     `json:"cursor"`
}

func printWrite(p *printer, asJSON bool, key string, v *confgatev1.Version, cursor []byte) error {
	if asJSON {
		return p.JSON(writeOut{Key: key, Version: versionJSON(v), Cursor: cursorText(cursor)})
	}
	return p.Linef("partition=%d offset=%d cursor=%s", v.GetPartition(), v.GetOffset(), cursorText(cursor))
}

// snapshotDigest computes the digest of entries the way gateways do, to
// check a snapshot arrived whole.
func snapshotDigest(entries []*confgatev1.Entry) []byte {
	var d digest.Digest
	for _, e := range entries {
		d.Add(digest.Hash(e.GetKey(), e.GetValue(), e.GetVersion().GetPartition(), e.GetVersion().GetOffset()))
	}
	return d.Bytes()
}

// reasonText names a snapshot reason in output: its enum name without the
// prefix, lower case ("initial", "history_expired", ...).
func reasonText(r confgatev1.SnapshotReason) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "SNAPSHOT_REASON_"))
}
