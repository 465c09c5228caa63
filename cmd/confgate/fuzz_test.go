package main

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/confgate/confgate/examples/seed"
	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/store"
)

// FuzzParseSeed feeds the dev seed parser arbitrary files and asserts: it
// never panics; errors name the file; an accepted seed has valid keys,
// UTF-8 values, sorted unique headers within the store's limits (so
// loading it cannot fail half way); and writing the accepted entries back
// as a seed file parses to the same writes.
func FuzzParseSeed(f *testing.F) {
	f.Add(seed.Sample)
	f.Add([]byte(`{"entries":[{"key":"a/b","value":"5s","content_type":"text/plain","headers":{"z":"1","owner":"me"}}]}`))
	f.Add([]byte(`{"entries":[{"key":"a/doc","value":{ "x" : [1, 2.50e1, null] }},{"key":"a/n","value":42}]}`))
	f.Add([]byte(`{"entries":[{"key":"a/./b","value":"x"},{"key":"e\u0301","value":"x"}]}`))
	f.Add([]byte(`{"entries":[{"key":"a","value":"\ud800"}]} `))
	f.Fuzz(func(t *testing.T, data []byte) {
		writes, err := parseSeed("fuzz.json", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "seed fuzz.json: ") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		out := seedFile{Entries: []seedEntry{}}
		for _, w := range writes {
			if err := keyspace.ValidateKey(w.Key); err != nil {
				t.Fatalf("accepted invalid key: %v", err)
			}
			if !utf8.Valid(w.Value) || w.Value == nil {
				t.Fatalf("key %q: value %q is not UTF-8 text", w.Key, w.Value)
			}
			if err := checkSeedLimits(w); err != nil || len(w.ContentType) > store.MaxContentTypeBytes {
				t.Fatalf("key %q: accepted over the store's limits: %v", w.Key, err)
			}
			if !slices.IsSortedFunc(w.Headers, func(a, b store.Header) int { return strings.Compare(a.Key, b.Key) }) {
				t.Fatalf("key %q: headers not sorted", w.Key)
			}
			value, _ := json.Marshal(string(w.Value))
			e := seedEntry{Key: w.Key, Value: value, ContentType: w.ContentType}
			for i, h := range w.Headers {
				if i > 0 && w.Headers[i-1].Key == h.Key {
					t.Fatalf("key %q: header %q twice", w.Key, h.Key)
				}
				if e.Headers == nil {
					e.Headers = map[string]string{}
				}
				e.Headers[h.Key] = string(h.Value)
			}
			out.Entries = append(out.Entries, e)
		}
		again, err := json.Marshal(out)
		if err != nil {
			t.Fatal(err)
		}
		back, err := parseSeed("again.json", again)
		if err != nil {
			t.Fatalf("accepted entries written back do not parse: %v\n%s", err, again)
		}
		if len(back) != len(writes) || (len(writes) > 0 && !reflect.DeepEqual(back, writes)) {
			t.Fatalf("round trip differs:\n%+v\n%+v", writes, back)
		}
	})
}

// TestSeedLimits: a seed the store would refuse part way fails whole,
// before anything is written.
func TestSeedLimits(t *testing.T) {
	many := map[string]string{}
	for i := range store.MaxHeaders + 1 {
		many[strings.Repeat("h", i+1)] = "v"
	}
	manyJSON, _ := json.Marshal(many)
	tests := []struct{ name, entry, want string }{
		{"value too large", `{"key":"a","value":"` + strings.Repeat("x", store.MaxValueBytes+1) + `"}`, "more than the limit"},
		{"content type too long", `{"key":"a","value":"x","content_type":"` + strings.Repeat("t", store.MaxContentTypeBytes+1) + `"}`, "content type"},
		{"content-type header", `{"key":"a","value":"x","headers":{"content-type":"text/plain"}}`, `"content_type"`},
		{"too many headers", `{"key":"a","value":"x","headers":` + string(manyJSON) + `}`, "headers, more than the limit"},
		{"headers too large", `{"key":"a","value":"x","headers":{"h":"` + strings.Repeat("v", store.MaxHeaderBytes) + `"}}`, "headers are"},
		{"ok", `{"key":"a","value":"x","content_type":"text/plain","headers":{"owner":"me"}}`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseSeed("t", []byte(`{"entries":[{"key":"first","value":"1"},`+tt.entry+`]}`))
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "entry 2") {
				t.Fatalf("error %v, want entry 2 and %q", err, tt.want)
			}
		})
	}
}
