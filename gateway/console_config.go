package gateway

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/store"
)

// configData is the config page: the folders and entries right under
// Prefix, in key order, from after After.
type configData struct {
	Prefix  string
	Crumbs  []crumb
	Error   string
	Items   []configItem
	Next    string // After of the next page, "" on the last
	Clipped string // why the page ended early
	Cursor  string
}

type crumb struct{ Name, Prefix string }

type configItem struct {
	Folder string // a folder: its prefix (ends with '/')
	Name   string // the folder or key name below Prefix
	Entry  *entryView
}

type entryView struct {
	Key         string
	ContentType string
	Version     string
	Size        int
	Kind        string // json, text or binary
	Value       string
	Note        string
	Headers     []headerView
}

type headerView struct{ Key, Value string }

func (c *console) config(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := configData{Prefix: q.Get("prefix")}
	d.Crumbs = crumbs(d.Prefix)
	if err := keyspace.ValidatePrefix(d.Prefix); err != nil {
		d.Error = err.Error()
		w.WriteHeader(http.StatusBadRequest)
		c.render(w, "config.html", page{Title: "Config", Nav: "config", Data: d})
		return
	}
	snap, err := c.g.src.Snapshot()
	if err != nil {
		d.Error = "no snapshot yet: " + err.Error()
		c.render(w, "config.html", page{Title: "Config", Nav: "config", Data: d})
		return
	}
	d.Cursor = snap.Cursor.String()
	sel, _ := keyspace.NewSelector([]string{d.Prefix})
	after := q.Get("after")
	budget := consolePageValues
	for {
		var folder string
		done := true
		snap.ScanAfter(sel, after, func(e *store.Entry) bool {
			if len(d.Items) >= consolePageItems || budget <= 0 {
				d.Next = after
				if budget <= 0 {
					d.Clipped = fmt.Sprintf("this page ends after %d MiB of values", consolePageValues>>20)
				}
				return false
			}
			rest := e.Key[len(d.Prefix):]
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				folder = d.Prefix + rest[:i+1]
				d.Items = append(d.Items, configItem{Folder: folder, Name: rest[:i+1]})
				done = false
				return false
			}
			ev := viewEntry(e)
			budget -= len(ev.Value)
			d.Items = append(d.Items, configItem{Name: rest, Entry: ev})
			after = e.Key
			return true
		})
		if done {
			break
		}
		// Skip the folder's keys: keys are UTF-8, so no key under it
		// sorts after folder+"\xff".
		after = folder + "\xff"
	}
	c.render(w, "config.html", page{Title: "Config", Nav: "config", Data: d})
}

// crumbs are the links to each folder above prefix.
func crumbs(prefix string) []crumb {
	out := []crumb{{Name: "(all)", Prefix: ""}}
	for i := 0; i < len(prefix); {
		j := strings.IndexByte(prefix[i:], '/')
		if j < 0 {
			out = append(out, crumb{Name: prefix[i:], Prefix: prefix})
			break
		}
		out = append(out, crumb{Name: prefix[i : i+j+1], Prefix: prefix[:i+j+1]})
		i += j + 1
	}
	return out
}

// viewEntry is e as the page shows it: JSON indented, text as text,
// anything else as a hex dump; at most consoleValueBytes of it.
func viewEntry(e *store.Entry) *entryView {
	v := &entryView{Key: e.Key, ContentType: e.ContentType, Version: fmt.Sprintf("%d:%d", e.Partition, e.Offset), Size: len(e.Value)}
	for _, h := range e.Headers {
		v.Headers = append(v.Headers, headerView{Key: h.Key, Value: printable(h.Value, 1024)})
	}
	ct := strings.ToLower(strings.TrimSpace(strings.SplitN(e.ContentType, ";", 2)[0]))
	isJSON := ct == "application/json" || strings.HasSuffix(ct, "+json")
	switch {
	case isJSON && len(e.Value) <= consoleValueBytes && json.Valid(e.Value):
		var b bytes.Buffer
		_ = json.Indent(&b, e.Value, "", "  ")
		v.Kind = "json"
		v.Value = b.String()
		if b.Len() > consoleValueBytes {
			v.Value = clipUTF8(v.Value, consoleValueBytes)
			v.Note = fmt.Sprintf("indented, clipped at %d KiB", consoleValueBytes>>10)
		}
	case isJSON || isTextType(ct) || looksText(e.Value):
		v.Kind = "text"
		if isJSON {
			v.Kind = "json"
			if len(e.Value) <= consoleValueBytes {
				v.Note = "not valid JSON: shown as text"
			}
		}
		v.Value = strings.ToValidUTF8(clipUTF8(string(e.Value), consoleValueBytes), "\uFFFD")
		if len(e.Value) > consoleValueBytes {
			v.Note = fmt.Sprintf("%d bytes, clipped at %d KiB", len(e.Value), consoleValueBytes>>10)
		}
	default:
		v.Kind = "binary"
		n := min(len(e.Value), 4096)
		v.Value = hex.Dump(e.Value[:n])
		v.Note = fmt.Sprintf("binary, %d bytes: a hex dump of the first %d", len(e.Value), n)
	}
	return v
}

func isTextType(ct string) bool {
	if strings.HasPrefix(ct, "text/") {
		return true
	}
	switch ct {
	case "application/yaml", "application/x-yaml", "application/toml", "application/xml", "application/javascript", "application/x-www-form-urlencoded":
		return true
	}
	return strings.HasSuffix(ct, "+xml") || strings.HasSuffix(ct, "+yaml")
}

// looksText reports whether b (untyped) reads as text: UTF-8 without
// control characters other than whitespace.
func looksText(b []byte) bool {
	if len(b) > consoleValueBytes {
		b = b[:consoleValueBytes]
		for len(b) > 0 && !utf8.Valid(b) && len(b) > consoleValueBytes-4 {
			b = b[:len(b)-1]
		}
	}
	if !utf8.Valid(b) {
		return false
	}
	for _, r := range string(b) {
		if r < 0x20 && r != '\n' && r != '\r' && r != '\t' || r == 0x7f {
			return false
		}
	}
	return true
}

// clipUTF8 is s cut to at most n bytes, not inside a character.
func clipUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// printable is b as text when it reads as text, else as hex.
func printable(b []byte, n int) string {
	if looksText(b) {
		return clipUTF8(string(b), n)
	}
	return "0x" + hex.EncodeToString(b[:min(len(b), n/2)])
}
