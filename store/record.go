package store

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"unicode/utf8"

	"github.com/confgate/confgate/internal/keyspace"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Limits on one entry. They are the same for records written through a
// gateway (Produce refuses what exceeds them) and for records any other
// producer wrote to the topic (decode skips them, identically on every
// gateway, so digests agree). An entry within them always fits one message
// that every client can receive: gRPC's default receive limit is 4 MiB.
const (
	// MaxValueBytes is the largest value.
	MaxValueBytes = 1000 * 1000
	// MaxContentTypeBytes is the longest content type.
	MaxContentTypeBytes = 256
	// MaxHeaders is the most headers one entry carries, content type
	// included.
	MaxHeaders = 64
	// MaxHeaderBytes bounds the headers' keys and values together, content
	// type included.
	MaxHeaderBytes = 16 << 10
	// MaxRecordBytes bounds a record read from the topic: key, value and
	// headers together. Every record Kafka accepts at its default
	// max.message.bytes (1048588, batch overhead included) is below it;
	// larger ones only exist on topics where that was raised.
	MaxRecordBytes = 1 << 20
	// ProducerBatchBytes is what the gateway's producer lets one batch
	// hold: Kafka's default max.message.bytes, so that a record within the
	// limits above is never refused by the client itself.
	ProducerBatchBytes = 1048588
)

// Record rule violations. Produce wraps them, decode counts them as skips.
var (
	// ErrBadHeader: a header key is not UTF-8, or the content type is not
	// UTF-8, too long, or given twice.
	ErrBadHeader = errors.New("bad header")
	// ErrTooLarge: the record exceeds one of the size limits.
	ErrTooLarge = errors.New("record too large")
)

// RuleError is a record that breaks one of the rules above: Field names
// the part at fault as a write request calls it ("value", "headers"), Msg
// says what is wrong and what to do, Kind is ErrBadHeader or ErrTooLarge.
type RuleError struct {
	Kind  error
	Field string
	Msg   string
}

func (e *RuleError) Error() string { return e.Msg }
func (e *RuleError) Unwrap() error { return e.Kind }

func ruleErr(kind error, field, format string, args ...any) error {
	return &RuleError{Kind: kind, Field: field, Msg: fmt.Sprintf(format, args...)}
}

// headerView is what checkHeaders needs of a header, whatever its type.
type headerView struct {
	key   string
	value []byte
}

// checkHeaders applies the header rules and returns the content type.
func checkHeaders(hs []headerView) (contentType string, err error) {
	if len(hs) > MaxHeaders {
		return "", ruleErr(ErrTooLarge, "headers", "%d headers, more than the limit %d", len(hs), MaxHeaders)
	}
	total, seenCT := 0, false
	for i, h := range hs {
		total += len(h.key) + len(h.value)
		if !utf8.ValidString(h.key) {
			return "", ruleErr(ErrBadHeader, "headers", "key of header %d is not valid UTF-8 (%s): header keys are text", i, strconv.Quote(clip(h.key)))
		}
		if h.key != ContentTypeHeader {
			continue
		}
		switch {
		case seenCT:
			return "", ruleErr(ErrBadHeader, "headers", "more than one %q header: give the content type once", ContentTypeHeader)
		case len(h.value) > MaxContentTypeBytes:
			return "", ruleErr(ErrBadHeader, "headers", "content type is %d bytes, longer than the limit %d", len(h.value), MaxContentTypeBytes)
		case !utf8.Valid(h.value):
			return "", ruleErr(ErrBadHeader, "headers", "content type is not valid UTF-8 (%s)", strconv.Quote(clip(string(h.value))))
		}
		seenCT, contentType = true, string(h.value)
	}
	if total > MaxHeaderBytes {
		return "", ruleErr(ErrTooLarge, "headers", "headers are %d bytes, more than the limit %d", total, MaxHeaderBytes)
	}
	return contentType, nil
}

func clip(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// decode turns a Kafka record into something apply understands. Invalid
// records become skips so they still move the cursor. The rules depend on
// the record alone, so every gateway skips the same records.
func (s *Store) decode(r *kgo.Record, partitions int32) rec {
	out := rec{part: r.Partition, off: r.Offset, ts: r.Timestamp.UnixMilli(), logAppend: r.Attrs.TimestampType() == 1}
	if r.Attrs.IsControl() {
		out.skip = skipControl
		return out
	}
	out.set, out.cond = markOf(r.Headers)
	var (
		key = string(r.Key)
		ct  string
		err error
	)
	switch {
	case len(r.Key) == 0:
		out.skip = skipNoKey
	case keyspace.ValidateKey(key) != nil:
		out.skip, err = skipBadKey, keyspace.ValidateKey(key)
	case recordSize(r) > MaxRecordBytes, len(r.Value) > MaxValueBytes:
		out.skip = skipTooLarge
		err = ruleErr(ErrTooLarge, "record", "%d bytes (value %d), over the limits (record %d, value %d)", recordSize(r), len(r.Value), MaxRecordBytes, MaxValueBytes)
	default:
		hs := make([]headerView, len(r.Headers))
		for i, h := range r.Headers {
			hs[i] = headerView{h.Key, h.Value}
		}
		if ct, err = checkHeaders(hs); err != nil {
			out.skip = skipBadHeader
			if errors.Is(err, ErrTooLarge) {
				out.skip = skipTooLarge
			}
		} else if want := s.partitionOf(r.Key, partitions); want != r.Partition {
			// A key lives in exactly one partition, the one Kafka's default
			// partitioner picks; a copy elsewhere would make "latest"
			// depend on consumption order.
			out.skip = skipMisrouted
		}
	}
	if out.skip != skipNone {
		args := []any{"reason", out.skip, "partition", r.Partition, "offset", r.Offset, "key", clipKey(r.Key)}
		if err != nil {
			args = append(args, "err", err)
		}
		s.logSampled("skip:"+string(out.skip), slog.LevelWarn, "skipping malformed record", args...)
		return out
	}
	e := &Entry{Key: key, Deleted: r.Value == nil, ContentType: ct}
	if !e.Deleted {
		// Copied: franz-go hands out slices of the whole decoded fetch
		// buffer, which a long-lived entry would otherwise keep alive.
		e.Value = bytes.Clone(r.Value)
	}
	if len(r.Headers) > 0 {
		e.Headers = make([]Header, len(r.Headers))
		for i, h := range r.Headers {
			e.Headers[i] = Header{Key: h.Key, Value: bytes.Clone(h.Value)}
		}
	}
	out.entry = e
	return out
}

// recordSize is the record's key, value and headers, in bytes.
// markOf reads the change-set and precondition headers; malformed ones
// count as absent.
func markOf(hs []kgo.RecordHeader) (m SetMark, c Cond) {
	for _, h := range hs {
		if len(h.Key) < len(ReservedHeaderPrefix) || h.Key[:len(ReservedHeaderPrefix)] != ReservedHeaderPrefix {
			continue
		}
		switch h.Key {
		case SetHeader:
			m, _ = ParseSetMark(h.Value)
		case IfHeader:
			c, _ = ParseCond(string(h.Value))
		}
	}
	return m, c
}

func recordSize(r *kgo.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

func clipKey(k []byte) string {
	if len(k) > 64 {
		k = k[:64]
	}
	return strconv.Quote(string(k))
}

// CheckWrite reports why the store would refuse to write w (a RuleError,
// or a key error), or nil: the rules decode applies on read. Callers that
// write many entries check them all first, so nothing is half written.
func CheckWrite(w Write) error {
	_, err := checkWrite(w)
	return err
}

// checkWrite applies the rules decode applies, so that nothing a gateway
// acknowledges is skipped on read. It returns the headers to write.
func checkWrite(w Write) ([]kgo.RecordHeader, error) {
	if err := keyspace.ValidateKey(w.Key); err != nil {
		return nil, err
	}
	if len(w.Value) > MaxValueBytes {
		return nil, ruleErr(ErrTooLarge, "value", "value is %d bytes, more than the limit %d: keep config entries small", len(w.Value), MaxValueBytes)
	}
	var hs []kgo.RecordHeader
	if w.ContentType != "" {
		hs = append(hs, kgo.RecordHeader{Key: ContentTypeHeader, Value: []byte(w.ContentType)})
	}
	for _, h := range w.Headers {
		if h.Key == ContentTypeHeader && w.ContentType != "" {
			if string(h.Value) != w.ContentType {
				return nil, ruleErr(ErrBadHeader, "headers", "content type given twice, as %q and in a %q header: give it once", clip(w.ContentType), ContentTypeHeader)
			}
			continue
		}
		hs = append(hs, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	if err := checkKgoHeaders(hs); err != nil {
		return nil, err
	}
	return hs, nil
}

// partitionOf is the partition Kafka's default partitioner gives key. It
// reuses one record (the consume loop is its only caller), which saves an
// allocation per record read: 100,000 at a bootstrap of 100,000 keys.
func (s *Store) partitionOf(key []byte, partitions int32) int32 {
	s.partRec.Key = key
	p := s.keyPart.Partition(&s.partRec, int(partitions))
	s.partRec.Key = nil
	return int32(p)
}
