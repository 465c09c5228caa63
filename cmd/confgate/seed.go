package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/store"
)

// The seed format is documented in examples/seed (doc.go).
type seedFile struct {
	Entries []seedEntry `json:"entries"`
}

type seedEntry struct {
	Key         string            `json:"key"`
	Value       json.RawMessage   `json:"value"`
	ContentType string            `json:"content_type"`
	Headers     map[string]string `json:"headers"`
}

// parseSeed reads a seed file into writes, checking all of it before
// anything is written. name is how errors refer to the file.
func parseSeed(name string, data []byte) ([]store.Write, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f seedFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("seed %s: %w (want {\"entries\": [{\"key\": ..., \"value\": ...}, ...]})", name, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("seed %s: unexpected data after the top-level object", name)
	}
	writes := make([]store.Write, 0, len(f.Entries))
	for i, e := range f.Entries {
		w, err := e.write()
		if err != nil {
			return nil, fmt.Errorf("seed %s: entry %d (key %q): %w", name, i+1, e.Key, err)
		}
		writes = append(writes, w)
	}
	return writes, nil
}

func (e seedEntry) write() (store.Write, error) {
	if err := keyspace.ValidateKey(e.Key); err != nil {
		return store.Write{}, err
	}
	w := store.Write{Key: e.Key, ContentType: e.ContentType}
	raw := bytes.TrimSpace(e.Value)
	switch {
	case len(raw) == 0:
		return store.Write{}, errors.New(`"value" is missing`)
	case string(raw) == "null":
		return store.Write{}, errors.New(`"value" is null: a seed sets values; give a string or a JSON document`)
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return store.Write{}, err
		}
		w.Value = []byte(s)
	default:
		var buf bytes.Buffer
		if err := json.Compact(&buf, raw); err != nil {
			return store.Write{}, err
		}
		// Compact copies string bytes as they are; a seed holds text.
		if !utf8.Valid(buf.Bytes()) {
			return store.Write{}, errors.New(`"value" is a JSON document that is not valid UTF-8`)
		}
		w.Value = buf.Bytes()
		if w.ContentType == "" {
			w.ContentType = "application/json"
		}
	}
	keys := make([]string, 0, len(e.Headers))
	for k := range e.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		w.Headers = append(w.Headers, store.Header{Key: k, Value: []byte(e.Headers[k])})
	}
	if err := checkSeedLimits(w); err != nil {
		return store.Write{}, err
	}
	return w, nil
}

// checkSeedLimits applies the store's entry rules (store.CheckWrite)
// before anything is written, so a seed the store would refuse fails whole
// instead of half loaded.
func checkSeedLimits(w store.Write) error {
	for _, h := range w.Headers {
		if h.Key == store.ContentTypeHeader {
			return fmt.Errorf("a %q header: give the content type as \"content_type\"", store.ContentTypeHeader)
		}
	}
	return store.CheckWrite(w)
}

// loadSeed writes the entries in order (each acknowledged with acks=all)
// and returns a cursor that covers all of them.
func loadSeed(ctx context.Context, st *store.Store, writes []store.Write) (cursor.Cursor, error) {
	var all cursor.Cursor
	for _, w := range writes {
		_, _, c, err := st.Produce(ctx, w)
		if err != nil {
			return cursor.Cursor{}, fmt.Errorf("write seed entry %q: %w", w.Key, err)
		}
		all = cursor.Max(all, c)
	}
	return all, nil
}
