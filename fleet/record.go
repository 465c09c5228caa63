package fleet

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"
)

// MaxRecordBytes bounds a record's value; larger ones are skipped when read
// and never written.
const MaxRecordBytes = 64 << 10

// recordVersion is the "v" field of the records this package writes.
const recordVersion = 1

// Record is one client's latest state, as in the topic.
type Record struct {
	ClientID string
	Service  string
	Labels   map[string]string
	Selector []string
	// Gateway is the name of the gateway holding the client's stream.
	Gateway        string
	ConnectedSince time.Time
	// LastReport is when the client last reported (zero: never).
	LastReport time.Time
	Connected  bool
	// AppliedCursor and Digest are the client's last report's.
	AppliedCursor []byte
	Digest        []byte
	Rejections    []Rejection
	// Updated is when a gateway wrote the record (its clock); set by the
	// publisher, ignored in the arguments of Connected and Report.
	Updated time.Time
}

// Rejection is a value a client's application refused to use.
type Rejection struct {
	Key       string
	Partition int32
	Offset    int64
	Reason    string
}

// Clone returns a deep copy of r.
func (r Record) Clone() Record {
	r.Labels = maps.Clone(r.Labels)
	r.Selector = slices.Clone(r.Selector)
	r.AppliedCursor = bytes.Clone(r.AppliedCursor)
	r.Digest = bytes.Clone(r.Digest)
	r.Rejections = slices.Clone(r.Rejections)
	return r
}

type wireRejection struct {
	Key       string `json:"key"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Reason    string `json:"reason,omitempty"`
}

type wireRecord struct {
	V                int               `json:"v"`
	ClientID         string            `json:"client_id"`
	Service          string            `json:"service,omitempty"`
	Labels           map[string]string `json:"labels,omitempty"`
	Selector         []string          `json:"selector,omitempty"`
	Gateway          string            `json:"gateway"`
	Connected        bool              `json:"connected"`
	ConnectedSinceMS int64             `json:"connected_since_ms,omitempty"`
	LastReportMS     int64             `json:"last_report_ms,omitempty"`
	UpdatedMS        int64             `json:"updated_ms"`
	AppliedCursor    []byte            `json:"applied_cursor,omitempty"`
	Digest           []byte            `json:"digest,omitempty"`
	Rejections       []wireRejection   `json:"rejections,omitempty"`
}

func toMS(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return max(t.UnixMilli(), 1)
}

func fromMS(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// Skip reasons, the label of confgate_fleet_records_skipped_total.
const (
	reasonNoKey       = "no_key"
	reasonTooLarge    = "too_large"
	reasonBadJSON     = "bad_json"
	reasonVersion     = "version"
	reasonInvalid     = "invalid"
	reasonKeyMismatch = "key_mismatch"
	reasonViewFull    = "view_full"
	reasonLocalFull   = "local_full"
	reasonUnwritable  = "unwritable"
)

// decodeError says why a value was skipped.
type decodeError struct {
	reason string
	err    error
}

func (e *decodeError) Error() string { return "fleet record " + e.reason + ": " + e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

func skip(reason string, format string, args ...any) error {
	return &decodeError{reason: reason, err: fmt.Errorf(format, args...)}
}

// encodeRecord encodes r; it fails when the value would exceed
// MaxRecordBytes even without rejections (which are trimmed first).
func encodeRecord(r Record) ([]byte, error) {
	w := wireRecord{
		V: recordVersion, ClientID: r.ClientID, Service: r.Service, Labels: r.Labels,
		Selector: r.Selector, Gateway: r.Gateway, Connected: r.Connected,
		ConnectedSinceMS: toMS(r.ConnectedSince), LastReportMS: toMS(r.LastReport), UpdatedMS: toMS(r.Updated),
		AppliedCursor: r.AppliedCursor, Digest: r.Digest,
	}
	for _, rj := range r.Rejections {
		w.Rejections = append(w.Rejections, wireRejection(rj))
	}
	for {
		b, err := json.Marshal(w)
		if err != nil {
			return nil, fmt.Errorf("encode fleet record of %q: %w", r.ClientID, err)
		}
		if len(b) <= MaxRecordBytes {
			return b, nil
		}
		if len(w.Rejections) == 0 {
			return nil, fmt.Errorf("encode fleet record of %q: %d bytes, over %d", r.ClientID, len(b), MaxRecordBytes)
		}
		w.Rejections = w.Rejections[:len(w.Rejections)/2]
	}
}

// decodeRecord decodes a record's value read under key, strictly: the
// errors are *decodeError, naming the skip reason.
func decodeRecord(key, value []byte) (Record, error) {
	if len(key) == 0 {
		return Record{}, skip(reasonNoKey, "record without a key")
	}
	if len(value) > MaxRecordBytes {
		return Record{}, skip(reasonTooLarge, "%d bytes, over %d", len(value), MaxRecordBytes)
	}
	var ver struct {
		V *int `json:"v"`
	}
	if err := json.Unmarshal(value, &ver); err != nil {
		return Record{}, skip(reasonBadJSON, "%w", err)
	}
	if ver.V == nil || *ver.V != recordVersion {
		return Record{}, skip(reasonVersion, "version not %d", recordVersion)
	}
	var w wireRecord
	dec := json.NewDecoder(bytes.NewReader(value))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Record{}, skip(reasonBadJSON, "%w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Record{}, skip(reasonBadJSON, "data after the record")
	}
	if err := validClientID(w.ClientID); err != nil {
		return Record{}, skip(reasonInvalid, "%w", err)
	}
	if w.ClientID != string(key) {
		return Record{}, skip(reasonKeyMismatch, "client ID %q under key %q", w.ClientID, key)
	}
	if w.ConnectedSinceMS < 0 || w.LastReportMS < 0 || w.UpdatedMS < 0 {
		return Record{}, skip(reasonInvalid, "negative time")
	}
	r := Record{
		ClientID: w.ClientID, Service: w.Service, Labels: w.Labels, Selector: w.Selector,
		Gateway: w.Gateway, Connected: w.Connected,
		ConnectedSince: fromMS(w.ConnectedSinceMS), LastReport: fromMS(w.LastReportMS), Updated: fromMS(w.UpdatedMS),
		AppliedCursor: w.AppliedCursor, Digest: w.Digest,
	}
	for _, rj := range w.Rejections {
		r.Rejections = append(r.Rejections, Rejection(rj))
	}
	return r, nil
}

// validClientID checks the ClientInfo.client_id rule: 1 to 128 printable
// ASCII characters.
func validClientID(id string) error {
	if id == "" || len(id) > 128 {
		return fmt.Errorf("client ID of %d bytes, want 1 to 128", len(id))
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("client ID with byte %#x, want printable ASCII", c)
		}
	}
	return nil
}

// sameReport says whether a and b carry the same report (what a new
// record is published for; LastReport alone is not).
func sameReport(a, b Record) bool {
	return slices.Equal(a.Selector, b.Selector) && bytes.Equal(a.AppliedCursor, b.AppliedCursor) &&
		bytes.Equal(a.Digest, b.Digest) && slices.Equal(a.Rejections, b.Rejections)
}

// takeReport copies the report fields of src into dst.
func takeReport(dst *Record, src Record) {
	dst.Selector = slices.Clone(src.Selector)
	dst.AppliedCursor = bytes.Clone(src.AppliedCursor)
	dst.Digest = bytes.Clone(src.Digest)
	dst.Rejections = slices.Clone(src.Rejections)
	dst.LastReport = src.LastReport
}
