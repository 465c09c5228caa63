package fleet

import (
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestRecordRoundTrip(t *testing.T) {
	now := time.UnixMilli(time.Now().UnixMilli())
	for _, r := range []Record{
		{ClientID: "c", Gateway: "g"},
		{ClientID: "c1", Service: "payments", Labels: map[string]string{"zone": "a"}, Selector: []string{"payments/", "shared-prefix/"},
			Gateway: "gw-a", ConnectedSince: now, LastReport: now, Updated: now, Connected: true,
			AppliedCursor: []byte{1, 2, 3}, Digest: []byte{4}, Rejections: []Rejection{{Key: "k", Partition: 2, Offset: 9, Reason: "no"}}},
	} {
		b, err := encodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeRecord([]byte(r.ClientID), b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Errorf("round trip of %s:\n got %+v\nwant %+v", b, got, r)
		}
		if !strings.HasPrefix(string(b), `{"v":1,`) {
			t.Errorf("record %s does not start with the version", b)
		}
	}
}

func TestEncodeBounded(t *testing.T) {
	r := Record{ClientID: "c", Gateway: "g"}
	for range 5000 {
		r.Rejections = append(r.Rejections, Rejection{Key: strings.Repeat("k", 40), Reason: "reason"})
	}
	b, err := encodeRecord(r)
	if err != nil || len(b) > MaxRecordBytes {
		t.Fatalf("%d bytes, %v", len(b), err)
	}
	if got, err := decodeRecord([]byte("c"), b); err != nil || len(got.Rejections) == 0 {
		t.Errorf("trimmed record: %d rejections, %v", len(got.Rejections), err)
	}
	r = Record{ClientID: "c", Digest: make([]byte, MaxRecordBytes)}
	if _, err := encodeRecord(r); err == nil {
		t.Error("a record over the bound without rejections encoded")
	}
}

func FuzzDecodeRecord(f *testing.F) {
	seed, _ := encodeRecord(Record{ClientID: "c", Gateway: "g", Connected: true, Labels: map[string]string{"a": "b"},
		Rejections: []Rejection{{Key: "k"}}, Updated: time.UnixMilli(5)})
	f.Add([]byte("c"), seed)
	f.Add([]byte("c"), []byte(`{"v":1,"client_id":"c","gateway":"g"}`))
	f.Add([]byte("c"), []byte(`{"v":2}`))
	f.Add([]byte(""), []byte(`null`))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		r, err := decodeRecord(key, value)
		if err != nil {
			var de *decodeError
			if !errors.As(err, &de) || de.reason == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		if r.ClientID != string(key) || validClientID(r.ClientID) != nil {
			t.Fatalf("accepted client ID %q under key %q", r.ClientID, key)
		}
		b, err := encodeRecord(r)
		if err != nil {
			return // trimmed past the bound: fine
		}
		again, err := decodeRecord(key, b)
		if err != nil {
			t.Fatalf("re-decode of %s: %v", b, err)
		}
		if _, err := encodeRecord(again); err != nil {
			t.Fatal(err)
		}
	})
}
