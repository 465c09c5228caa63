package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/keyspace"
)

// ttyBuffer is a buffer that says it is a terminal.
type ttyBuffer struct{ syncBuffer }

func (*ttyBuffer) IsTerminal() bool { return true }

func TestDisplay(t *testing.T) {
	tests := []struct {
		name, in, value, key string
	}{
		{"plain", "payments/db", "payments/db", "payments/db"},
		{"unicode", "unicodé ✓ ключ", "unicodé ✓ ключ", "unicodé ✓ ключ"},
		{"escape sequence", "a\x1b]0;pwned\x07b", `"a\x1b]0;pwned\ab"`, `"a\x1b]0;pwned\ab"`},
		{"newline", "two\nlines", `"two\nlines"`, `"two\nlines"`},
		{"bidi override", "admin/\u202etxt.exe", `"admin/\u202etxt.exe"`, `"admin/\u202etxt.exe"`},
		{"zero width space", "pay\u200bments", `"pay\u200bments"`, `"pay\u200bments"`},
		{"variation selector", "\u2764\ufe0f", `"❤\ufe0f"`, `"❤\ufe0f"`},
		{"C1 control", "a\u009b31m", `"a\u009b31m"`, `"a\u009b31m"`},
		{"leading quote", `"quoted"`, `"quoted"`, `"\"quoted\""`},
		{"not UTF-8", "\x00\xff", "(base64) AP8=", `"\x00\xff"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := displayValue([]byte(tt.in)); got != tt.value {
				t.Errorf("displayValue(%q) = %s, want %s", tt.in, got, tt.value)
			}
			if got := displayKey(tt.in); got != tt.key {
				t.Errorf("displayKey(%q) = %s, want %s", tt.in, got, tt.key)
			}
		})
	}
}

func TestTerminalSafe(t *testing.T) {
	tests := []struct {
		in   string
		safe bool
	}{
		{"7s", true},
		{"{\n\t\"a\": 1\n}\n", true},
		{"10\u00a0000 and\u3000ideographic space", true},
		{"ключ ✓", true},
		{"", true},
		{"\x1b[2J", false},
		{"carriage\rreturn", false},
		{"back\bspace", false},
		{"a\u202eb", false},
		{"a\u2066b", false},
		{"a\u200db", false},
		{"\ufeffbom", false},
		{"a\u009bb", false},
		{"\xff", false},
		{"a\u2028b", false},
		{"private\ue000use", false},
	}
	for _, tt := range tests {
		if got := terminalSafe([]byte(tt.in)); got != tt.safe {
			t.Errorf("terminalSafe(%q) = %v, want %v", tt.in, got, tt.safe)
		}
	}
}

func TestJSONEscapesHidden(t *testing.T) {
	for _, v := range []string{"plain", "a\u202eb", "\x1b[31m\x7f", "tag\U000E0041", "nl\n\u2028", "\ufe0f\u200b", `q"\`} {
		var buf bytes.Buffer
		p := newPrinter(&buf)
		if err := p.JSON(map[string]string{"value": v}); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
			t.Errorf("%q: not one line: %q", v, out)
		}
		for _, r := range strings.TrimSuffix(out, "\n") {
			if keyspace.Hidden(r) {
				t.Errorf("%q: output %q holds %U", v, out, r)
			}
		}
		var back map[string]string
		if err := json.Unmarshal(buf.Bytes(), &back); err != nil || back["value"] != v {
			t.Errorf("%q: output %q decodes to %q (%v)", v, out, back["value"], err)
		}
	}
}

// TestGetOnTerminal: get escapes a hostile value on a terminal, prints it as
// is with --raw and when stdout is not a terminal, and prints safe values
// as they are everywhere.
func TestGetOnTerminal(t *testing.T) {
	t.Parallel()
	_, c := startDev(t, "--no-seed")
	hostile := "ok\x1b]0;pwned\x07 \u202eevil"
	multi := "{\n\t\"a\": 1\n}"
	putCursor(t, c, "svc/hostile", hostile)
	cur := putCursor(t, c, "svc/multi", multi)
	get := func(tty bool, args ...string) result {
		t.Helper()
		var out ttyBuffer
		var plain, errb syncBuffer
		env := c.env(nil, &plain, &errb)
		if tty {
			env.Stdout = &out
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		code := run(ctx, append([]string{"get", "--min-cursor", cur}, args...), env)
		if tty {
			return result{code, out.String(), errb.String()}
		}
		return result{code, plain.String(), errb.String()}
	}
	tests := []struct {
		name       string
		tty        bool
		args       []string
		out        string
		noteStderr bool
	}{
		{"terminal escapes", true, []string{"svc/hostile"}, `"ok\x1b]0;pwned\a \u202eevil"` + "\n", true},
		{"terminal --raw", true, []string{"svc/hostile", "--raw"}, hostile + "\n", false},
		{"pipe is raw", false, []string{"svc/hostile"}, hostile + "\n", false},
		{"terminal keeps safe multi-line", true, []string{"svc/multi"}, multi + "\n", false},
		{"terminal json", true, []string{"svc/hostile", "-o", "json"}, `"value":"ok\u001b]0;pwned\u0007 \u202eevil"`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := get(tt.tty, tt.args...)
			if r.code != 0 {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			if !strings.Contains(r.stdout, tt.out) || (!strings.Contains(strings.Join(tt.args, " "), "json") && r.stdout != tt.out) {
				t.Errorf("stdout %q, want %q", r.stdout, tt.out)
			}
			if got := strings.Contains(r.stderr, "--raw"); got != tt.noteStderr {
				t.Errorf("stderr %q: note shown %v, want %v", r.stderr, got, tt.noteStderr)
			}
		})
	}
}
