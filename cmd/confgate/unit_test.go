package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/confgate/confgate/gateway"
	"github.com/confgate/confgate/store"
	"github.com/spf13/pflag"
)

func TestParseSeed(t *testing.T) {
	ws, err := parseSeed("t", []byte(`{"entries":[
		{"key":"a/b","value":"5s","content_type":"text/plain"},
		{"key":"a/doc","value":{ "x" : [1, 2] },"headers":{"z":"1","owner":"me"}},
		{"key":"a/n","value":42,"content_type":"text/x-number"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(ws[0].Value) != "5s" || ws[0].ContentType != "text/plain" {
		t.Errorf("string entry: %+v", ws[0])
	}
	if string(ws[1].Value) != `{"x":[1,2]}` || ws[1].ContentType != "application/json" {
		t.Errorf("JSON entry: %+v", ws[1])
	}
	if len(ws[1].Headers) != 2 || ws[1].Headers[0].Key != "owner" {
		t.Errorf("headers not sorted: %+v", ws[1].Headers)
	}
	if string(ws[2].Value) != "42" || ws[2].ContentType != "text/x-number" {
		t.Errorf("explicit content type: %+v", ws[2])
	}

	for in, want := range map[string]string{
		`{"entries":[{"key":"/x","value":"v"}]}`:                   "leading slash",
		`{"entries":[{"key":"x"}]}`:                                `"value" is missing`,
		`{"entries":[{"key":"x","value":null}]}`:                   "null",
		`{"entries":[{"key":"x","value":"v","content-type":"a"}]}`: "unknown field",
		`{"entries":[]} {}`:                                        "after the top-level object",
		`[1]`:                                                      "want {",
		`{"entries":[{"key":"ok","value":"v"},{"key":"a//b","value":1}]}`: "entry 2",
	} {
		if _, err := parseSeed("t", []byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("parseSeed(%s) = %v, want an error containing %q", in, err, want)
		}
	}
}

func TestValueRendering(t *testing.T) {
	for in, want := range map[string]string{
		"7s":         "7s",
		"two\nlines": `"two\nlines"`,
		"\x00\xff":   "(base64) AP8=",
		"":           "",
		"tab\there":  `"tab\there"`,
		"unicodé ✓":  "unicodé ✓",
	} {
		if got := displayValue([]byte(in)); got != want {
			t.Errorf("displayValue(%q) = %q, want %q", in, got, want)
		}
	}
	if s, enc := encodeValue([]byte{0xff}); s != "/w==" || enc != "base64" {
		t.Errorf("encodeValue: %q %q", s, enc)
	}
}

func TestByteSizes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1048576": 1 << 20, "64MiB": 64 << 20, "512KiB": 512 << 10, "1 GiB": 1 << 30, "8mb": 8 << 20, "100B": 100} {
		got, err := parseBytes(in)
		if err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "MiB", "1.5MiB", "lots"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) accepted", in)
		}
	}
	for n, want := range map[int64]string{0: "0", 64 << 20: "64MiB", 1 << 30: "1GiB", 1500: "1500", 3 << 10: "3KiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// The flags' defaults are the packages' own: a serve with no tuning flags
// runs exactly store.Defaults and gateway.Defaults.
func TestFlagDefaultsAreThePackagesDefaults(t *testing.T) {
	f := &serverFlags{}
	f.register(pflag.NewFlagSet("serve", pflag.ContinueOnError))
	sc, err := f.storeConfig()
	if err != nil {
		t.Fatal(err)
	}
	gc, err := f.gatewayConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	sd, gd := store.Defaults(), gateway.Defaults()
	sd.ReplicationFactor = 0                  // a serve flag of its own
	gd.MaxSnapshotBuilds = 0                  // "0: twice the CPUs", resolved by the gateway
	gd.CacheBytes = gateway.DefaultCacheBytes // on by default in the CLI; 0 is off
	if !reflect.DeepEqual(sc, sd) {
		t.Errorf("store flags default to\n%+v\nthe package to\n%+v", sc, sd)
	}
	if !reflect.DeepEqual(gc, gd) {
		t.Errorf("gateway flags default to\n%+v\nthe package to\n%+v", gc, gd)
	}
}

func TestOneLineEscapes(t *testing.T) {
	for in, want := range map[string]string{
		"plain\n  message":          "plain message",
		"evil \x1b[2J clear":        `evil \u001b[2J clear`,
		"bidi \u202e reversed":      `bidi \u202e reversed`,
		"zero\u200bwidth":           `zero\u200bwidth`,
		"bad utf8 \xff":             "bad utf8 \uFFFD",
		"ünïcödé stays as it is ok": "ünïcödé stays as it is ok",
	} {
		if got := oneLine(in); got != want {
			t.Errorf("oneLine(%q) = %q, want %q", in, got, want)
		}
	}
}
