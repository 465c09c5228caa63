package keyspace

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite testdata/rules.json from the Go rules")

// phrases are what each rule's message says, in every client: the shared
// rules file carries them so the Python and Node tests check the same
// words.
var phrases = map[string]string{
	ruleEmpty:         "is empty",
	ruleLength:        "longer than the limit",
	ruleUTF8:          "not valid UTF-8",
	ruleControl:       "control character",
	ruleInvisible:     "invisible or formatting character",
	ruleNFC:           "normalize to NFC",
	ruleLeadingSlash:  "starts with '/'",
	ruleTrailingSlash: "ends with '/'",
	ruleEmptySegment:  "empty path segment",
	ruleDotSegment:    "'.' or '..' segment",
}

// ruleOf is the rule err enforces, "" for nil. It fails the test when err
// is not a ruleError or its message lacks the rule's phrase.
func ruleOf(t testing.TB, err error) string {
	t.Helper()
	if err == nil {
		return ""
	}
	var re *ruleError
	if !errors.As(err, &re) {
		t.Fatalf("error %q is not a ruleError", err)
	}
	if !strings.Contains(re.msg, phrases[re.rule]) {
		t.Fatalf("error %q (rule %s) does not say %q", err, re.rule, phrases[re.rule])
	}
	return re.rule
}

type ruleCase struct {
	S    string `json:"s"`
	Rule string `json:"rule"` // "" when valid
}

// keyCases and prefixCases are the hand-written cases of the rules; the
// rules file adds one case per end of each rejected range.
var keyCases = []ruleCase{
	{"payments/db/timeout", ""},
	{"a", ""},
	{"ünïcode/ключ", ""},
	{"with space/and-dash_underscore.dot", ""},
	{"a/.hidden", ""},
	{"a/...", ""},
	{"a/..b", ""},
	{".x", ""},
	{"日本/設定", ""},
	{"\u00e9t\u00e9", ""},    // NFC é
	{"\uac01", ""},           // a precomposed Hangul syllable
	{"\u2764", ""},           // a heart without a variation selector
	{"\U0001F600/emoji", ""}, // a plain emoji
	{"", ruleEmpty},
	{"/a", ruleLeadingSlash},
	{"/", ruleLeadingSlash},
	{"a/", ruleTrailingSlash},
	{"a//b", ruleEmptySegment},
	{".", ruleDotSegment},
	{"..", ruleDotSegment},
	{"a/./b", ruleDotSegment},
	{"a/../b", ruleDotSegment},
	{"a/..", ruleDotSegment},
	{"./a", ruleDotSegment},
	{"a\nb", ruleControl},
	{"a\x1b[31mred", ruleControl},
	{"a\u0085b", ruleControl},
	{"a\u2028b", ruleControl},
	{"a\u2029b", ruleControl},
	{"pay\u200bments/x", ruleInvisible},
	{"pay\u200cments", ruleInvisible},
	{"pay\u200dments", ruleInvisible},
	{"a\u200eb", ruleInvisible},
	{"a\u200fb", ruleInvisible},
	{"admin/\u202etxt.exe", ruleInvisible},
	{"a\u202ab", ruleInvisible},
	{"a\u2066b\u2069", ruleInvisible},
	{"\ufeffkey", ruleInvisible},
	{"soft\u00adhyphen", ruleInvisible},
	{"a\u2060b", ruleInvisible},
	{"\u2764\ufe0f", ruleInvisible},
	{"a\U000E0100", ruleInvisible},
	{"a\u034fb", ruleInvisible},
	{"\u3164", ruleInvisible},
	{"a\U000E0041", ruleInvisible}, // a tag character
	{"a\u061cb", ruleInvisible},
	{"e\u0301te", ruleNFC},     // NFD é
	{"\u1100\u1161", ruleNFC},  // Hangul jamo that compose
	{"\u2126", ruleNFC},        // OHM SIGN, a singleton decomposition
	{"a\u0323\u0307", ruleNFC}, // a + dot below + dot above: composes to U+1EA1 U+0307
	{"a\u0307\u0323", ruleNFC}, // marks out of canonical order
	{"\u1e0b\u0323", ruleNFC},  // ḋ + dot below: reorders and recomposes
	{"\u1e0d\u0307", ""},       // ḍ + dot above: already NFC
	{"a/\x80", ruleUTF8},
	{string([]byte{0xff}), ruleUTF8},
	{"\xed\xa0\x80", ruleUTF8}, // an encoded surrogate
	{strings.Repeat("k", MaxKeyLen), ""},
	{strings.Repeat("k", MaxKeyLen+1), ruleLength},
	{strings.Repeat("é", MaxKeyLen/2+1), ruleLength},
	{"/a\u200b", ruleInvisible}, // characters are checked before structure
}

var prefixCases = []ruleCase{
	{"", ""},
	{"a", ""},
	{"a/", ""},
	{"payments/db/", ""},
	{"a/.", ""},  // a leading part of "a/.x"
	{"a/..", ""}, // a leading part of "a/..x"
	{".", ""},
	{"..", ""},
	{"e", ""},      // selects "ex", not "é"
	{"\u1100", ""}, // NFC on its own, though U+1161 would compose with it
	{"\u00e9", ""},
	{"/", ruleLeadingSlash},
	{"/a", ruleLeadingSlash},
	{"a//", ruleEmptySegment},
	{"a//b", ruleEmptySegment},
	{"./", ruleDotSegment},
	{"../", ruleDotSegment},
	{"a/./", ruleDotSegment},
	{"a/../b", ruleDotSegment},
	{"a\x00", ruleControl},
	{"a\u202e", ruleInvisible},
	{"\u200b", ruleInvisible},
	{"pay\u200b", ruleInvisible},
	{"e\u0301", ruleNFC},
	{"\u1100\u1161", ruleNFC},
	{"\xff", ruleUTF8},
	{strings.Repeat("x", MaxKeyLen) + "/", ruleLength},
}

func TestValidateKey(t *testing.T) {
	for _, tt := range keyCases {
		t.Run(strconv.QuoteToASCII(clipForName(tt.S)), func(t *testing.T) {
			err := ValidateKey(tt.S)
			if got := ruleOf(t, err); got != tt.Rule {
				t.Fatalf("rule %q (error %v), want %q", got, err, tt.Rule)
			}
			if err != nil {
				checkMessage(t, err)
			}
		})
	}
}

func TestValidatePrefix(t *testing.T) {
	for _, tt := range prefixCases {
		t.Run(strconv.QuoteToASCII(clipForName(tt.S)), func(t *testing.T) {
			err := ValidatePrefix(tt.S)
			if got := ruleOf(t, err); got != tt.Rule {
				t.Fatalf("rule %q (error %v), want %q", got, err, tt.Rule)
			}
			if err != nil {
				checkMessage(t, err)
			}
		})
	}
}

func clipForName(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}

// checkMessage: a message is one line of valid, visible UTF-8 that says
// what to do (every message has a ':' before its advice).
func checkMessage(t testing.TB, err error) {
	t.Helper()
	msg := err.Error()
	if !utf8.ValidString(msg) {
		t.Fatalf("message %q is not UTF-8", msg)
	}
	for _, r := range msg {
		if Hidden(r) {
			t.Fatalf("message %q carries hidden character %U", msg, r)
		}
	}
	if !strings.Contains(msg, ": ") {
		t.Fatalf("message %q gives no advice", msg)
	}
}

func TestNFCMessageShowsTheFix(t *testing.T) {
	err := ValidateKey("caf" + "e\u0301/menu")
	if err == nil || !strings.Contains(err.Error(), "at byte 3, U+0065 U+0301 is U+00E9 in NFC; normalize to NFC (\"caf\u00e9/menu\")") {
		t.Fatalf("error %v, want it to show the NFC form", err)
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain/key", `"plain/key"`},
		{"ключ/é", `"ключ/é"`},
		{"a\x1b[2Jb", `"a\x1b[2Jb"`},
		{"a\u202eb", `"a\u202eb"`},
		{"\u2764\ufe0f", `"❤\ufe0f"`},
		{"q\"b\\s", `"q\"b\\s"`},
		{"\xff\xfe", `"\xff\xfe"`},
		{"nb\u00a0sp", `"nb\u00a0sp"`},
		{"\U000E0041", `"\U000e0041"`},
		{"tab\there", `"tab\there"`},
	}
	for _, tt := range tests {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
		if back, err := strconv.Unquote(Quote(tt.in)); err != nil || back != tt.in {
			t.Errorf("Unquote(Quote(%q)) = %q, %v", tt.in, back, err)
		}
	}
}

// rulesFile is testdata/rules.json, the reference the Python and Node
// clients test their copies of the rules against.
type rulesFile struct {
	Comment        string            `json:"comment"`
	UnicodeVersion string            `json:"unicode_version"`
	MaxKeyLen      int               `json:"max_key_len"`
	Phrases        map[string]string `json:"phrases"`
	// Rejected are the code points Hidden rejects: "U+0000..U+001F".
	Rejected []string   `json:"rejected_ranges"`
	Keys     []ruleCase `json:"keys"`
	Prefixes []ruleCase `json:"prefixes"`
}

// rejectedRanges lists the code points Hidden rejects, as inclusive ranges.
func rejectedRanges() [][2]rune {
	var out [][2]rune
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !Hidden(r) {
			continue
		}
		if n := len(out); n > 0 && out[n-1][1] == r-1 {
			out[n-1][1] = r
		} else {
			out = append(out, [2]rune{r, r})
		}
	}
	return out
}

func buildRulesFile(t *testing.T) rulesFile {
	f := rulesFile{
		Comment: "Generated by internal/keyspace (go test ./internal/keyspace -run TestRulesFile -update): " +
			"the key and selector prefix rules. The Python and Node clients test their copies against it. Strings are " +
			"valid UTF-8; rule is \"\" for valid, else the rule whose phrase the error message contains.",
		UnicodeVersion: unicode.Version,
		MaxKeyLen:      MaxKeyLen,
		Phrases:        phrases,
	}
	ranges := rejectedRanges()
	for _, rg := range ranges {
		f.Rejected = append(f.Rejected, fmt.Sprintf("%U..%U", rg[0], rg[1]))
	}
	add := func(dst *[]ruleCase, s string, validate func(string) error) {
		if !utf8.ValidString(s) || len(s) > 300 {
			return // the file holds text; length is tested with a short rule
		}
		*dst = append(*dst, ruleCase{s, ruleOf(t, validate(s))})
	}
	for _, c := range keyCases {
		add(&f.Keys, c.S, ValidateKey)
	}
	for _, c := range prefixCases {
		add(&f.Prefixes, c.S, ValidatePrefix)
	}
	// Each end of each rejected range and its neighbours, inside a key and
	// at the end of a prefix.
	for _, rg := range ranges {
		for _, r := range []rune{rg[0] - 1, rg[0], rg[1], rg[1] + 1} {
			if r < 0 || r > unicode.MaxRune || (r >= 0xd800 && r <= 0xdfff) {
				continue
			}
			add(&f.Keys, "k/"+string(r)+"x", ValidateKey)
			add(&f.Prefixes, "k/"+string(r), ValidatePrefix)
		}
	}
	return f
}

// encode writes f with one range or case per line.
func (f rulesFile) encode() []byte {
	var b bytes.Buffer
	field := func(name string, v any, last bool) {
		j, _ := json.Marshal(v)
		fmt.Fprintf(&b, " %q: %s", name, j)
		if !last {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	list := func(name string, n int, elem func(int) any, last bool) {
		fmt.Fprintf(&b, " %q: [\n", name)
		for i := range n {
			j, _ := json.Marshal(elem(i))
			b.WriteString("  ")
			b.Write(j)
			if i < n-1 {
				b.WriteString(",")
			}
			b.WriteString("\n")
		}
		b.WriteString(" ]")
		if !last {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("{\n")
	field("comment", f.Comment, false)
	field("unicode_version", f.UnicodeVersion, false)
	field("max_key_len", f.MaxKeyLen, false)
	field("phrases", f.Phrases, false)
	list("rejected_ranges", len(f.Rejected), func(i int) any { return f.Rejected[i] }, false)
	list("keys", len(f.Keys), func(i int) any { return f.Keys[i] }, false)
	list("prefixes", len(f.Prefixes), func(i int) any { return f.Prefixes[i] }, true)
	b.WriteString("}\n")
	return asciiJSON(b.Bytes())
}

// TestRulesFile keeps testdata/rules.json equal to the rules: when Go's
// Unicode tables or the rules change, regenerate it with -update and bring
// clients/python and clients/node in line (their tests read it).
func TestRulesFile(t *testing.T) {
	want := buildRulesFile(t).encode()
	var check rulesFile
	if err := json.Unmarshal(want, &check); err != nil {
		t.Fatalf("the rules file is not JSON: %v", err)
	}
	const path = "testdata/rules.json"
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date: run go test ./internal/keyspace -run TestRulesFile -update, then update the Python and Node clients' copies", path)
	}
}

// asciiJSON escapes every non-ASCII character of a JSON text as \uXXXX
// (surrogate pairs above U+FFFF), so the file shows no invisible character.
func asciiJSON(b []byte) []byte {
	var out bytes.Buffer
	for _, r := range string(b) {
		switch {
		case r < 0x80:
			out.WriteRune(r)
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(&out, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			fmt.Fprintf(&out, `\u%04x`, r)
		}
	}
	return out.Bytes()
}

func TestSelector(t *testing.T) {
	tests := []struct {
		name     string
		prefixes []string
		norm     []string
		match    []string
		miss     []string
	}{
		{"all", nil, nil, []string{"a", "z/y"}, nil},
		{"empty prefix is all", []string{"a/", ""}, nil, []string{"q"}, nil},
		{"covered dropped", []string{"pay/db/", "pay/", "auth/"}, []string{"auth/", "pay/"}, []string{"pay/x", "auth/y", "pay/"}, []string{"pa", "billing/x", "auth"}},
		{"dupes", []string{"b", "b", "a"}, []string{"a", "b"}, []string{"a", "ab", "b/c"}, []string{"c", ""}},
		{"bytes, not letters", []string{"e"}, []string{"e"}, []string{"ex", "e/x"}, []string{"\u00e9"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSelector(tt.prefixes)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.Prefixes(), tt.norm) {
				t.Fatalf("prefixes %q, want %q", s.Prefixes(), tt.norm)
			}
			for _, k := range tt.match {
				if !s.Match(k) {
					t.Errorf("should match %q", k)
				}
			}
			for _, k := range tt.miss {
				if s.Match(k) {
					t.Errorf("should not match %q", k)
				}
			}
		})
	}
	a, _ := NewSelector([]string{"x/", "y/"})
	b, _ := NewSelector([]string{"y/", "x/", "x/z"})
	if a.Key() != b.Key() {
		t.Fatal("equal selectors have different keys")
	}
	for _, bad := range [][]string{{"/bad"}, {"a/../"}, {"a\u200b"}, {"e\u0301"}, {"", "/bad"}} {
		if _, err := NewSelector(bad); err == nil {
			t.Fatalf("accepted %q", bad)
		}
	}
	if _, err := NewSelector(make([]string, MaxPrefixes+1)); err == nil {
		t.Fatal("accepted too many prefixes")
	}
}

// Hidden's ASCII fast path says what the tables say.
func TestHiddenASCIIMatchesTables(t *testing.T) {
	for r := rune(0); r < 0x3000; r++ {
		if got, want := Hidden(r), unicode.IsOneOf(rejectedTables, r); got != want {
			t.Fatalf("Hidden(%U) = %v, the tables say %v", r, got, want)
		}
	}
	for _, r := range []rune{0, 0x1b, 0x7f, '\t'} {
		if !Hidden(r) {
			t.Errorf("Hidden(%U) = false, want a control character refused", r)
		}
	}
}
