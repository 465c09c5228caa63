package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/confgate/confgate/internal/digest"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/confgate/confgate/store"
)

// printer writes a verb's output: lines of text, or one JSON object per
// line.
type printer struct {
	w   io.Writer
	enc *json.Encoder
}

func newPrinter(w io.Writer) *printer {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return &printer{w: w, enc: enc}
}

// JSON writes v as one line.
func (p *printer) JSON(v any) error { return p.enc.Encode(v) }

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
// printable UTF-8, Go-quoted when it holds newlines or other control
// characters, and "(base64) ..." when it is not UTF-8.
func displayValue(v []byte) string {
	text, enc := encodeValue(v)
	if enc != "" {
		return "(base64) " + text
	}
	for _, r := range text {
		if unicode.IsControl(r) {
			return strconv.Quote(text)
		}
	}
	return text
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
