package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kfake"
	"go.yaml.in/yaml/v3"
)

// envMap is an Env.Getenv over a map.
func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// runEnv runs one command line to completion with an environment.
func runEnv(t *testing.T, env map[string]string, args ...string) result {
	t.Helper()
	var out, errb syncBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e := &Env{Stdin: bytes.NewReader(nil), Stdout: &out, Stderr: &errb, Getenv: envMap(env),
		Started: func(Addrs) { t.Errorf("confgate %s started a node", strings.Join(args, " ")) }}
	code := run(ctx, args, e)
	return result{code, out.String(), errb.String()}
}

// printConfig runs serve --print-config and parses what it prints.
func printConfig(t *testing.T, env map[string]string, args ...string) (map[string]any, string) {
	t.Helper()
	r := runEnv(t, env, append([]string{"serve", "--print-config"}, args...)...)
	if r.code != 0 {
		t.Fatalf("serve --print-config %s: exit %d: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	var m map[string]any
	if err := yaml.Unmarshal([]byte(r.stdout), &m); err != nil {
		t.Fatalf("--print-config printed no YAML mapping: %v\n%s", err, r.stdout)
	}
	return m, r.stdout
}

// configFile writes a config file and returns its path.
func configFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "serve.yaml")
	writeFile(t, p, body)
	return p
}

// Flag beats environment beats file beats default, for a scalar, a list,
// a duration and a size, in every combination of layers; the printed
// comment names the layer that won.
func TestServeConfigPrecedence(t *testing.T) {
	type layers struct{ file, env, flag string } // "" for a layer that does not set it
	for _, s := range []struct {
		name            string // the setting
		file, env, flag string // its value in each layer, as each writes it
		want            [3]any // the printed value when the file, env, flag wins
	}{
		{name: "topic", file: "from-file", env: "from-env", flag: "from-flag",
			want: [3]any{"from-file", "from-env", "from-flag"}},
		{name: "brokers", file: "[f1:9092, f2:9092]", env: "e1:9092,e2:9092", flag: "c1:9092",
			want: [3]any{[]any{"f1:9092", "f2:9092"}, []any{"e1:9092", "e2:9092"}, []any{"c1:9092"}}},
		{name: "fetch-max-wait", file: "1s", env: "2m", flag: "3h",
			want: [3]any{"1s", "2m0s", "3h0m0s"}},
		{name: "cache-bytes", file: "1048576", env: "8MiB", flag: "2GiB",
			want: [3]any{"1MiB", "8MiB", "2GiB"}},
	} {
		for _, l := range []layers{
			{}, {file: "x"}, {env: "x"}, {flag: "x"},
			{file: "x", env: "x"}, {file: "x", flag: "x"}, {env: "x", flag: "x"}, {file: "x", env: "x", flag: "x"},
		} {
			var on []string
			for n, set := range map[string]bool{"file": l.file != "", "env": l.env != "", "flag": l.flag != ""} {
				if set {
					on = append(on, n)
				}
			}
			slices.Sort(on)
			if len(on) == 0 {
				on = []string{"default"}
			}
			t.Run(s.name+"/"+strings.Join(on, "+"), func(t *testing.T) {
				env := map[string]string{}
				var args []string
				want, wantSource := any(nil), ""
				if l.file != "" {
					args = append(args, "--config", configFile(t, s.name+": "+s.file+"\n"))
					want, wantSource = s.want[0], "file"
				}
				if l.env != "" {
					env[envName(s.name)] = s.env
					want, wantSource = s.want[1], "$"+envName(s.name)
				}
				if l.flag != "" {
					args = append(args, "--"+s.name, s.flag)
					want, wantSource = s.want[2], "--"+s.name
				}
				got, text := printConfig(t, env, args...)
				if want == nil {
					def, _ := printConfig(t, nil)
					want = def[s.name]
				}
				if !reflect.DeepEqual(got[s.name], want) {
					t.Errorf("%s = %#v, want %#v\n%s", s.name, got[s.name], want, text)
				}
				line := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(s.name) + `:.*$`).FindString(text)
				if wantSource == "" && strings.Contains(line, "#") || wantSource != "" && !strings.HasSuffix(line, "# "+wantSource) {
					t.Errorf("line %q: want the source %q", line, wantSource)
				}
			})
		}
	}
}

// Every kind of flag takes its value from the file and the environment,
// in the forms the docs promise.
func TestServeConfigValueForms(t *testing.T) {
	for _, tt := range []struct {
		name string
		file string            // config file body ("" for none)
		env  map[string]string // environment
		want map[string]any    // printed settings
	}{
		{"int from file", "history-batches: 10\nreplication-factor: 3\nmax-streams-per-conn: 7\n", nil,
			map[string]any{"history-batches": 10, "replication-factor": 3, "max-streams-per-conn": 7}},
		{"int from env", "", map[string]string{"CONFGATE_HISTORY_BATCHES": "10", "CONFGATE_REPLICATION_FACTOR": "-1"},
			map[string]any{"history-batches": 10, "replication-factor": -1}},
		{"bool", "create-topic: true\nfleet: false\n", map[string]string{"CONFGATE_KAFKA_TLS": "true"},
			map[string]any{"create-topic": true, "fleet": false, "kafka-tls": true}},
		{"sizes", "history-bytes: 1048576\nchunk-bytes: 512KiB\n", map[string]string{"CONFGATE_MEMO_BYTES": "1GiB"},
			map[string]any{"history-bytes": "1MiB", "chunk-bytes": "512KiB", "memo-bytes": "1GiB"}},
		{"durations", "tombstone-retention: 1h\nproducer-linger: 0s\n", map[string]string{"CONFGATE_STALE_AFTER": "90s"},
			map[string]any{"tombstone-retention": "1h0m0s", "producer-linger": "0s", "stale-after": "1m30s"}},
		{"list as a comma-separated string", "brokers: a:1,b:2\n", nil,
			map[string]any{"brokers": []any{"a:1", "b:2"}}},
		{"empty list", "auth-cert-names: []\n", nil,
			map[string]any{"auth-cert-names": []any{}}},
		{"repeatable flag: a list in the file, comma-separated in the env", "auth-jwt-audience: [confgate, other]\n",
			map[string]string{"CONFGATE_AUTH_CERT_NAMES": "dns,cn"},
			map[string]any{"auth-jwt-audience": []any{"confgate", "other"}, "auth-cert-names": []any{"dns", "cn"}}},
		{"repeatable flag from env", "", map[string]string{"CONFGATE_AUTH_JWT_AUDIENCE": `a,"b,c"`},
			map[string]any{"auth-jwt-audience": []any{"a", "b,c"}}},
		{"map from file", "topic-config:\n  segment.ms: 3600000\n  min.cleanable.dirty.ratio: 0.1\n  x.list: \"a,b=c\"\n", nil,
			map[string]any{"topic-config": map[string]any{"segment.ms": "3600000", "min.cleanable.dirty.ratio": "0.1", "x.list": "a,b=c"}}},
		{"map from env", "topic-config: {a: 1}\n", map[string]string{"CONFGATE_TOPIC_CONFIG": "segment.ms=1,b=2"},
			map[string]any{"topic-config": map[string]any{"segment.ms": "1", "b": "2"}}},
		{"empty string turns the admin listener off", "admin-listen: \"\"\n", nil,
			map[string]any{"admin-listen": ""}},
		{"empty env is unset", "", map[string]string{"CONFGATE_ADMIN_LISTEN": ""},
			map[string]any{"admin-listen": "127.0.0.1:9464"}},
		{"global flags serve reads", "log-level: debug\n", map[string]string{"CONFGATE_OUTPUT": "json"},
			map[string]any{"log-level": "debug", "output": "json"}},
		{"paths are printed, not read", "auth-tokens: /nonexistent/tokens\nkafka-tls-key: /nonexistent/key.pem\n", nil,
			map[string]any{"auth-tokens": "/nonexistent/tokens", "kafka-tls-key": "/nonexistent/key.pem"}},
		{"file of comments only", "# nothing set\n", nil, map[string]any{"topic": ""}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range tt.env {
				env[k] = v
			}
			if tt.file != "" {
				env[configEnv] = configFile(t, tt.file)
			}
			got, text := printConfig(t, env)
			for k, want := range tt.want {
				if !reflect.DeepEqual(got[k], want) {
					t.Errorf("%s = %#v, want %#v\n%s", k, got[k], want, text)
				}
			}
		})
	}
}

// Mistakes in the file or the environment fail serve with exit status 2
// and a message naming the file, line or variable, and the key.
func TestServeConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		name  string
		file  string
		env   map[string]string
		args  []string
		start bool     // run serve, not serve --print-config
		want  []string // all in the one-line error
	}{
		{"unknown key", "topic: t\ncache-byte: 1MiB\n", nil, nil, false,
			[]string{"config file ", "serve.yaml: line 2: unknown key \"cache-byte\"", "serve's flag names"}},
		{"several unknown keys", "zz: 1\naddr: x\ntopic: t\ntoken-file: f\n", nil, nil, false,
			[]string{`line 1: unknown key "zz" (and 2 more: addr, token-file)`}},
		{"nested form is not read", "kafka:\n  tls: true\n", nil, nil, false, []string{`unknown key "kafka"`}},
		{"password in the file", "kafka-sasl-password: hunter2\n", nil, nil, false,
			[]string{"kafka-sasl-password: the SASL password is read only from $CONFGATE_KAFKA_SASL_PASSWORD"}},
		{"--config is no key", "config: other.yaml\n", nil, nil, false, []string{`unknown key "config"`}},
		{"size", "topic: t\ncache-bytes: lots\n", nil, nil, false,
			[]string{"serve.yaml: line 2: cache-bytes: want a size such as 1048576 or 64MiB", `"lots" is not a size`}},
		{"duration without unit", "fetch-max-wait: 5\n", nil, nil, false,
			[]string{"serve.yaml: line 1: fetch-max-wait: want a duration such as 500ms or 5s"}},
		{"int", "history-batches: many\n", nil, nil, false, []string{"serve.yaml: line 1: history-batches: want an integer"}},
		{"int range", "replication-factor: 100000\n", nil, nil, false, []string{"serve.yaml: line 1: replication-factor: want an integer", "out of range"}},
		{"bool", "create-topic: maybe\n", nil, nil, false, []string{"serve.yaml: line 1: create-topic: want true or false"}},
		{"list for a scalar", "topic: [a, b]\n", nil, nil, false, []string{"serve.yaml: line 1: topic: want a string, not a list"}},
		{"map for a list", "brokers: {a: 1}\n", nil, nil, false, []string{"serve.yaml: line 1: brokers: want a list, not a map"}},
		{"nested list item", "brokers: [[a]]\n", nil, nil, false, []string{"serve.yaml: line 1: brokers: item 1: want a single value, not a list"}},
		{"nested map value", "topic-config: {a: {b: c}}\n", nil, nil, false, []string{"serve.yaml: line 1: topic-config: a: want a single value, not a map"}},
		{"null", "topic:\n", nil, nil, false, []string{"serve.yaml: line 1: topic: no value (null)"}},
		{"null list item", "brokers: [a:1, ~]\n", nil, nil, false, []string{"serve.yaml: line 1: brokers: item 2: no value (null)"}},
		{"null map value", "topic-config:\n  a: null\n", nil, nil, false, []string{"serve.yaml: line 1: topic-config: a: no value (null)"}},
		{"key set twice", "topic: a\ncache-bytes: 1MiB\ntopic: b\n", nil, nil, false, []string{"serve.yaml: line 3: topic is set twice (first on line 1)"}},
		{"map key set twice", "topic-config:\n  a: 1\n  a: 2\n", nil, nil, false, []string{"serve.yaml: line 3: topic-config: a is set twice"}},
		{"merge key", "topic: t\n<<: {cache-bytes: 1MiB}\n", nil, nil, false, []string{"serve.yaml: line 2: merge keys (<<) are not supported"}},
		{"list as a key", "? [a]\n: b\n", nil, nil, false, []string{"serve.yaml: line 1: a key must be a single value, not a list"}},
		{"two documents", "topic: a\n---\ntopic: b\n", nil, nil, false, []string{"serve.yaml: line 2: a second YAML document"}},
		{"not YAML", "topic: [\n", nil, nil, false, []string{"config file ", "serve.yaml: yaml:"}},
		{"not a mapping", "- topic\n", nil, nil, false, []string{"serve.yaml: line 1: want a mapping of settings (name: value), not a list"}},
		{"int with a leading zero", "history-batches: 0100\n", nil, nil, false,
			[]string{`serve.yaml: line 1: history-batches: want an integer: "0100" has a leading zero, which would read as octal: write 100 for decimal, or 0o100 for octal`}},
		{"int with a leading zero from env", "", map[string]string{"CONFGATE_REPLICATION_FACTOR": "-03"}, nil, false,
			[]string{`$CONFGATE_REPLICATION_FACTOR (--replication-factor): want an integer: "-03" has a leading zero`, "write -3 for decimal"}},
		{"YAML 1.1 boolean", "create-topic: yes\n", nil, nil, false, []string{"serve.yaml: line 1: create-topic: want true or false", `"yes"`}},
		{"print mode", "", nil, []string{"--print-config=some"}, false, []string{`invalid argument "some" for "--print-config" flag: want all or changed`}},
		{"bad env value", "", map[string]string{"CONFGATE_CACHE_BYTES": "lots"}, nil, false,
			[]string{"$CONFGATE_CACHE_BYTES (--cache-bytes): want a size"}},
		{"bad env log level", "", map[string]string{"CONFGATE_LOG_LEVEL": "loud"}, nil, false, []string{`--log-level "loud"`}},
		{"missing file", "", nil, []string{"--config", "/nonexistent/serve.yaml"}, false,
			[]string{"config file (--config): open /nonexistent/serve.yaml"}},
		{"missing file from the env", "", map[string]string{configEnv: "/nonexistent/env.yaml"}, nil, false,
			[]string{"config file ($CONFGATE_CONFIG): open /nonexistent/env.yaml"}},
		// Settings from the file count as given for the auth checks.
		{"auth flags from the file are checked", "auth-jwt-issuer: https://issuer\n", nil, []string{"--brokers", "127.0.0.1:1", "--topic", "t"}, true,
			[]string{"--auth-jwt-issuer needs --auth-jwks"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range tt.env {
				env[k] = v
			}
			args := append([]string{"serve", "--print-config"}, tt.args...)
			if tt.start {
				args = append([]string{"serve"}, tt.args...)
			}
			if tt.file != "" {
				args = append(args, "--config", configFile(t, tt.file))
			}
			r := runEnv(t, env, args...)
			if r.code != exitFailure {
				t.Fatalf("exit %d, want %d; stdout: %s stderr: %s", r.code, exitFailure, r.stdout, r.stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr %q does not contain %q", r.stderr, w)
				}
			}
			if strings.Contains(r.stderr, "hunter2") {
				t.Errorf("the error shows the password: %s", r.stderr)
			}
		})
	}
}

// loadServe loads serve's settings from args, env and the file
// $CONFGATE_CONFIG names as serve does before it starts, and returns its
// flags: the values the rest of serve reads.
func loadServe(t *testing.T, env map[string]string, args ...string) (*pflag.FlagSet, error) {
	t.Helper()
	serve, _, err := newRootCmd(&Env{Getenv: envMap(env)}).Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	if err := serve.ParseFlags(args); err != nil { // merges the global flags in too
		t.Fatal(err)
	}
	var c serveConfig
	return serve.Flags(), c.load(serve, envMap(env))
}

// flagValue is a flag's value in the form --print-config's YAML parses
// to: a string, an int, a bool, a list or a map.
func flagValue(t *testing.T, fs *pflag.FlagSet, name string) any {
	t.Helper()
	f := fs.Lookup(name)
	if f == nil {
		t.Fatalf("no flag --%s", name)
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		out := []any{}
		for _, e := range sv.GetSlice() {
			out = append(out, e)
		}
		return out
	}
	switch {
	case f.Value.Type() == "stringToString":
		m, err := fs.GetStringToString(name)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]any{}
		for k, v := range m {
			out[k] = v
		}
		return out
	case f.Value.Type() == "bool":
		b, err := strconv.ParseBool(f.Value.String())
		if err != nil {
			t.Fatal(err)
		}
		return b
	case isInt(f):
		n, err := strconv.Atoi(f.Value.String())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	return f.Value.String()
}

// Every value reaches its flag as the text written in the file, never as
// YAML would type it (1.10 the float 1.1, 0123 the octal 83, 1e3 1000, no
// false): checked in what serve's flags hold and in what --print-config
// prints, read by a YAML parser that does type plain scalars. Integers
// with a leading zero are refused rather than read as octal; null is an
// error naming the key.
func TestServeConfigScalarsAsWritten(t *testing.T) {
	for _, tt := range []struct {
		name string
		file string            // the config file
		env  map[string]string // the environment, besides $CONFGATE_CONFIG
		key  string            // the setting checked
		want any               // its value; nil when the file is refused
		err  string            // the error, when it is
	}{
		// Strings.
		{name: "decimal stays as written", file: "topic: 1.10\n", key: "topic", want: "1.10"},
		{name: "leading zero is not octal", file: "kafka-sasl-user: 0123\n", key: "kafka-sasl-user", want: "0123"},
		{name: "exponent is not expanded", file: "gateway-name: 1e3\n", key: "gateway-name", want: "1e3"},
		{name: "leading zeros are kept", file: "topic: 000042\n", key: "topic", want: "000042"},
		{name: "no is not false", file: "topic: no\n", key: "topic", want: "no"},
		{name: "on is not true", file: "kafka-sasl-user: on\n", key: "kafka-sasl-user", want: "on"},
		{name: "true for a string flag is text", file: "topic: true\n", key: "topic", want: "true"},
		{name: "hex is text", file: "topic: 0x10\n", key: "topic", want: "0x10"},
		{name: "underscores are kept", file: "topic: 1_000\n", key: "topic", want: "1_000"},
		{name: "inf is text", file: "topic: .inf\n", key: "topic", want: ".inf"},
		{name: "sexagesimal is text", file: "topic: 1:20\n", key: "topic", want: "1:20"},
		{name: "date is text", file: "topic: 2001-12-14\n", key: "topic", want: "2001-12-14"},
		{name: "quoted number", file: "topic: \"1.10\"\n", key: "topic", want: "1.10"},
		{name: "single-quoted null", file: "topic: 'null'\n", key: "topic", want: "null"},
		{name: "quoted tilde", file: "topic: \"~\"\n", key: "topic", want: "~"},
		{name: "explicit tag changes nothing", file: "topic: !!str 0123\n", key: "topic", want: "0123"},
		{name: "alias", file: "topic: &t 1.10\ngateway-name: *t\n", key: "gateway-name", want: "1.10"},
		{name: "empty string", file: "admin-listen: \"\"\n", key: "admin-listen", want: ""},
		{name: "tilde is null", file: "topic: ~\n", key: "topic", err: "line 1: topic: no value (null)"},
		{name: "null is null", file: "topic: null\n", key: "topic", err: "line 1: topic: no value (null)"},
		{name: "nothing is null", file: "topic:\n", key: "topic", err: "line 1: topic: no value (null)"},
		{name: "environment is text", file: "topic: x\n", env: map[string]string{"CONFGATE_TOPIC": "0123"}, key: "topic", want: "0123"},
		// Integers, read by the flag's parser as on the command line.
		{name: "quoted number for an int flag", file: "history-batches: \"12\"\n", key: "history-batches", want: 12},
		{name: "hex int", file: "history-batches: 0x10\n", key: "history-batches", want: 16},
		{name: "0o octal int", file: "history-batches: 0o17\n", key: "history-batches", want: 15},
		{name: "int with underscores", file: "history-batches: 1_000\n", key: "history-batches", want: 1000},
		{name: "zero", file: "max-snapshot-builds: 0\n", key: "max-snapshot-builds", want: 0},
		{name: "negative int16", file: "replication-factor: -1\n", key: "replication-factor", want: -1},
		{name: "uint32", file: "max-streams-per-conn: 7\n", key: "max-streams-per-conn", want: 7},
		{name: "int with a leading zero", file: "history-batches: 0123\n", key: "history-batches",
			err: `line 1: history-batches: want an integer: "0123" has a leading zero, which would read as octal: write 123 for decimal, or 0o123 for octal`},
		{name: "int32 with leading zeros", file: "partitions: 006\n", key: "partitions", err: `"006" has a leading zero`},
		{name: "exponent for an int", file: "history-batches: 1e3\n", key: "history-batches", err: "line 1: history-batches: want an integer"},
		{name: "float for an int", file: "history-batches: 10.0\n", key: "history-batches", err: "want an integer"},
		{name: "inf for an int", file: "history-batches: .inf\n", key: "history-batches", err: "want an integer"},
		{name: "no for an int", file: "history-batches: no\n", key: "history-batches", err: "want an integer"},
		{name: "quoted tilde for an int", file: "history-batches: \"~\"\n", key: "history-batches", err: "want an integer"},
		{name: "null for an int", file: "history-batches: null\n", key: "history-batches", err: "line 1: history-batches: no value (null)"},
		// Booleans: strconv.ParseBool's forms, as on the command line.
		{name: "true", file: "create-topic: true\n", key: "create-topic", want: true},
		{name: "False", file: "fleet: False\n", key: "fleet", want: false},
		{name: "quoted true", file: "create-topic: \"true\"\n", key: "create-topic", want: true},
		{name: "1 for a bool", file: "create-topic: 1\n", key: "create-topic", want: true},
		{name: "yes for a bool", file: "create-topic: yes\n", key: "create-topic", err: "line 1: create-topic: want true or false"},
		{name: "off for a bool", file: "fleet: off\n", key: "fleet", err: "line 1: fleet: want true or false"},
		{name: "decimal for a bool", file: "fleet: 1.10\n", key: "fleet", err: "want true or false"},
		{name: "leading zero for a bool", file: "fleet: 0123\n", key: "fleet", err: "want true or false"},
		{name: "hex for a bool", file: "fleet: 0x10\n", key: "fleet", err: "want true or false"},
		{name: "empty string for a bool", file: "fleet: ''\n", key: "fleet", err: "want true or false"},
		{name: "null for a bool", file: "fleet: ~\n", key: "fleet", err: "line 1: fleet: no value (null)"},
		// Sizes and durations are decimal, with their units.
		{name: "size with a leading zero is decimal", file: "cache-bytes: 0123\n", key: "cache-bytes", want: "123"},
		{name: "quoted size", file: "cache-bytes: \"64MiB\"\n", key: "cache-bytes", want: "64MiB"},
		{name: "exponent for a size", file: "cache-bytes: 1e3\n", key: "cache-bytes", err: `line 1: cache-bytes: want a size such as 1048576 or 64MiB: "1e3" is not a size`},
		{name: "underscores in a size", file: "cache-bytes: 1_000\n", key: "cache-bytes", err: `"1_000" is not a size`},
		{name: "hex for a size", file: "cache-bytes: 0x10\n", key: "cache-bytes", err: `"0x10" is not a size`},
		{name: "no for a size", file: "cache-bytes: no\n", key: "cache-bytes", err: `"no" is not a size`},
		{name: "quoted tilde for a size", file: "cache-bytes: \"~\"\n", key: "cache-bytes", err: `"~" is not a size`},
		{name: "fractional duration", file: "fetch-max-wait: 1.5s\n", key: "fetch-max-wait", want: "1.5s"},
		{name: "quoted duration", file: "fetch-max-wait: \"2s\"\n", key: "fetch-max-wait", want: "2s"},
		{name: "leading zero for a duration needs a unit", file: "fetch-max-wait: 0123\n", key: "fetch-max-wait", err: "line 1: fetch-max-wait: want a duration"},
		{name: "decimal for a duration needs a unit", file: "fetch-max-wait: 1.10\n", key: "fetch-max-wait", err: "want a duration"},
		{name: "null for a duration", file: "fetch-max-wait:\n", key: "fetch-max-wait", err: "line 1: fetch-max-wait: no value (null)"},
		{name: "bare zero duration", file: "producer-linger: 0\n", key: "producer-linger", want: "0s"},
		{name: "exponent for a duration", file: "fetch-max-wait: 1e3\n", key: "fetch-max-wait", err: "line 1: fetch-max-wait: want a duration"},
		// Lists: each item as written.
		{name: "list items", file: "brokers: [1.10, 0123, no, \"1e3\"]\n", key: "brokers", want: []any{"1.10", "0123", "no", "1e3"}},
		{name: "block list", file: "auth-jwt-audience:\n  - 0123\n  - yes\n", key: "auth-jwt-audience", want: []any{"0123", "yes"}},
		{name: "scalar for a list", file: "brokers: 0123\n", key: "brokers", want: []any{"0123"}},
		{name: "comma-separated list", file: "brokers: 1.10,0123\n", key: "brokers", want: []any{"1.10", "0123"}},
		{name: "empty list", file: "auth-cert-names: []\n", key: "auth-cert-names", want: []any{}},
		{name: "null item", file: "brokers: [a, ~]\n", key: "brokers", err: "line 1: brokers: item 2: no value (null)"},
		// Maps: each value as written.
		{name: "map values", file: "topic-config:\n  segment.ms: 0123\n  retention.ms: 1e3\n  x: no\n  y: 1.10\n", key: "topic-config",
			want: map[string]any{"segment.ms": "0123", "retention.ms": "1e3", "x": "no", "y": "1.10"}},
		{name: "map keys", file: "topic-config: {1.10: a, 0123: b}\n", key: "topic-config", want: map[string]any{"1.10": "a", "0123": "b"}},
		{name: "null map value", file: "topic-config: {a: ~}\n", key: "topic-config", err: "line 1: topic-config: a: no value (null)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{configEnv: configFile(t, tt.file)}
			for k, v := range tt.env {
				env[k] = v
			}
			fs, err := loadServe(t, env)
			r := runEnv(t, env, "serve", "--print-config")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("loading: error %v, want %q", err, tt.err)
				}
				if r.code != exitFailure || !strings.Contains(r.stderr, tt.err) {
					t.Errorf("--print-config: exit %d, want %d with %q: %s", r.code, exitFailure, tt.err, r.stderr)
				}
				return
			}
			if err != nil {
				t.Fatalf("loading: %v", err)
			}
			if got := flagValue(t, fs, tt.key); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("--%s holds %#v, want %#v", tt.key, got, tt.want)
			}
			var printed map[string]any
			if r.code != 0 || yaml.Unmarshal([]byte(r.stdout), &printed) != nil {
				t.Fatalf("--print-config: exit %d: %s%s", r.code, r.stdout, r.stderr)
			}
			if !reflect.DeepEqual(printed[tt.key], tt.want) {
				t.Errorf("--print-config prints %s = %#v, want %#v:\n%s", tt.key, printed[tt.key], tt.want, r.stdout)
			}
		})
	}
}

// --print-config redacts the SASL password and prints no other secret of
// the environment; what it prints, read back with --config and nothing
// else, gives the same settings. Values YAML would retype (1.10, 0123,
// 1e3, no) are printed as written and quoted, so neither a generic YAML
// reader (the test's) nor --config changes them.
func TestServeConfigPrintRoundTrips(t *testing.T) {
	const secret = "hunter2-sasl"
	env := map[string]string{
		kafkaPasswordEnv:            secret,
		tokenEnv:                    "client-token-secret",
		"CONFGATE_TRANSACTIONAL_ID": "007",
		"CONFGATE_TOPIC_CONFIG":     `segment.ms=0123,"x=a,b"`,
		"CONFGATE_CACHE_BYTES":      "1000",
		"CONFGATE_LOG_LEVEL":        "warn",
	}
	file := configFile(t, `brokers: [k1:9092, "k2:9092"]
topic: 1.10
kafka-sasl-user: 0123
gateway-name: 1e3
kafka-tls-server-name: no
auth-jwt-subject-prefix: "cfg: with a colon"
kafka-sasl-mechanism: SCRAM-SHA-512
auth-jwt-audience: [a, "b,c", 0x10, yes]
auth-cert-names: []
admin-listen: ""
fetch-max-wait: 250ms
history-bytes: 3GiB
create-topic: true
replication-factor: 3
auth-jwt-groups-claim: "  spaced  "
`)
	first, text := printConfig(t, env, "--config", file, "--max-streams", "12")
	for _, leak := range []string{secret, "client-token-secret"} {
		if strings.Contains(text, leak) {
			t.Fatalf("--print-config shows a secret:\n%s", text)
		}
	}
	if !strings.Contains(text, "# kafka-sasl-password: <redacted> (from $CONFGATE_KAFKA_SASL_PASSWORD") {
		t.Errorf("--print-config does not say the password is set:\n%s", text)
	}
	if _, ok := first[kafkaPasswordName]; ok {
		t.Errorf("the password is a key:\n%s", text)
	}
	// Every setting is printed.
	cmd := newRootCmd(&Env{})
	serve, _, err := cmd.Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	for name := range settings(serve) {
		if _, ok := first[name]; !ok {
			t.Errorf("%s is not printed", name)
		}
	}
	if len(first) != len(settings(serve)) {
		t.Errorf("printed %d keys, serve has %d settings", len(first), len(settings(serve)))
	}

	// As written, to a YAML reader that types plain scalars.
	for k, want := range map[string]any{
		"topic": "1.10", "kafka-sasl-user": "0123", "gateway-name": "1e3", "kafka-tls-server-name": "no",
		"transactional-id": "007", "auth-jwt-groups-claim": "  spaced  ",
		"auth-jwt-audience": []any{"a", "b,c", "0x10", "yes"},
		"topic-config":      map[string]any{"segment.ms": "0123", "x": "a,b"},
	} {
		if !reflect.DeepEqual(first[k], want) {
			t.Errorf("%s = %#v, want %#v\n%s", k, first[k], want, text)
		}
	}
	for _, line := range []string{`topic: "1.10" # file`, `kafka-sasl-user: "0123" # file`, `transactional-id: "007" # $CONFGATE_TRANSACTIONAL_ID`, `history-batches: 65536`, `create-topic: true # file`} {
		if !strings.Contains(text, "\n"+line+"\n") {
			t.Errorf("--print-config has no line %s:\n%s", line, text)
		}
	}

	again, text2 := printConfig(t, nil, "--config", configFile(t, text))
	if !reflect.DeepEqual(first, again) {
		t.Errorf("read back, the settings differ:\nfirst:\n%s\nagain:\n%s", text, text2)
	}
	// And so do serve's flags.
	fs1, err := loadServe(t, map[string]string{configEnv: file, "CONFGATE_TRANSACTIONAL_ID": "007",
		"CONFGATE_TOPIC_CONFIG": env["CONFGATE_TOPIC_CONFIG"], "CONFGATE_CACHE_BYTES": "1000", "CONFGATE_LOG_LEVEL": "warn"}, "--max-streams", "12")
	if err != nil {
		t.Fatal(err)
	}
	fs2, err := loadServe(t, map[string]string{configEnv: configFile(t, text)})
	if err != nil {
		t.Fatal(err)
	}
	for name := range settings(serve) {
		if v1, v2 := flagValue(t, fs1, name), flagValue(t, fs2, name); !reflect.DeepEqual(v1, v2) {
			t.Errorf("--%s is %#v, read back %#v", name, v1, v2)
		}
	}
	if strings.Contains(text2, "kafka-sasl-password") {
		t.Errorf("without the password in the environment, it is still mentioned:\n%s", text2)
	}
}

// --print-config=changed prints only the settings a flag, the environment
// or the file gave, each with its source, even one given its default
// value; read back with --config and nothing else it gives the same
// settings as the full print, and with nothing given it prints an empty
// mapping, which reads back as all defaults. The flag alone, and =true,
// still print everything.
func TestServeConfigPrintChanged(t *testing.T) {
	file := configFile(t, "topic: 1.10\nbrokers: [k1:9092]\ncache-bytes: 64MiB\ntopic-config: {segment.ms: 0123}\n")
	env := map[string]string{"CONFGATE_LOG_LEVEL": "warn", "CONFGATE_STALE_AFTER": "1m"}
	args := []string{"--config", file, "--max-streams", "12"}
	all, _ := printConfig(t, env, args...)
	defaults, _ := printConfig(t, nil)
	for _, mode := range []string{"--print-config", "--print-config=true", "--print-config=all"} {
		got, text := printConfig(t, env, append(args, mode)...)
		if !reflect.DeepEqual(got, all) {
			t.Errorf("%s prints other settings than --print-config:\n%s", mode, text)
		}
	}

	changed, text := printConfig(t, env, append(args, "--print-config=changed")...)
	want := map[string]any{
		"topic": "1.10", "brokers": []any{"k1:9092"}, "cache-bytes": "64MiB", "topic-config": map[string]any{"segment.ms": "0123"},
		"log-level": "warn", "stale-after": "1m0s", "max-streams": 12,
	}
	if !reflect.DeepEqual(changed, want) {
		t.Errorf("--print-config=changed = %#v, want %#v\n%s", changed, want, text)
	}
	if defaults["cache-bytes"] != "64MiB" {
		t.Errorf("cache-bytes defaults to %v: the test wants a setting given its default", defaults["cache-bytes"])
	}
	for _, line := range []string{`topic: "1.10" # file`, `log-level: "warn" # $CONFGATE_LOG_LEVEL`, `max-streams: 12 # --max-streams`, "# Only those a flag"} {
		if !strings.Contains(text, line) {
			t.Errorf("--print-config=changed has no %s:\n%s", line, text)
		}
	}
	again, text2 := printConfig(t, nil, "--config", configFile(t, text))
	if !reflect.DeepEqual(again, all) {
		t.Errorf("--print-config=changed read back gives other settings:\n%s", text2)
	}

	none, text := printConfig(t, nil, "--print-config=changed")
	if len(none) != 0 || !strings.Contains(text, "\n{}\n") {
		t.Errorf("--print-config=changed with nothing given: %#v\n%s", none, text)
	}
	if back, _ := printConfig(t, nil, "--config", configFile(t, text)); !reflect.DeepEqual(back, defaults) {
		t.Errorf("the empty print read back is not the defaults: %#v", back)
	}
}

// --config may come from $CONFGATE_CONFIG; the flag beats the variable.
func TestServeConfigFileFromEnv(t *testing.T) {
	fromEnv := configFile(t, "topic: env-file\n")
	fromFlag := configFile(t, "topic: flag-file\n")
	for _, tt := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"variable", map[string]string{configEnv: fromEnv}, nil, "env-file"},
		{"flag beats variable", map[string]string{configEnv: fromEnv}, []string{"--config", fromFlag}, "flag-file"},
		{"setting beats the file the variable names", map[string]string{configEnv: fromEnv, "CONFGATE_TOPIC": "env"}, nil, "env"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, text := printConfig(t, tt.env, tt.args...)
			if got["topic"] != tt.want {
				t.Errorf("topic = %v, want %s\n%s", got["topic"], tt.want, text)
			}
		})
	}
}

// reusedEnv are the CONFGATE_ variables used elsewhere in the repository
// that are also serve settings, on purpose.
var reusedEnv = map[string]string{
	// The client test suites read it as the name of the gateway they
	// expect; for serve it is that name.
	"CONFGATE_GATEWAY_NAME": "clients/*/test*: the expected gateway's name",
	// The container image's defaults, which flags override.
	"CONFGATE_LISTEN":       "internal/ociimage: listen on every interface",
	"CONFGATE_ADMIN_LISTEN": "internal/ociimage: listen on every interface",
	// The Helm chart's tests set them in a values file's env to check
	// that the chart refuses a variable that sets a flag it passes.
	"CONFGATE_TOPIC":         "deploy/helm/test: env that sets a flag the chart sets",
	"CONFGATE_FLEET":         "deploy/helm/test: env that sets a flag the chart may set",
	"CONFGATE_HISTORY_BYTES": "deploy/helm/test: env that sets a flag an extra argument sets",
}

// No CONFGATE_ variable the rest of the repository uses (test harnesses,
// scripts, the client verbs) is a serve setting unless reusedEnv says so,
// and with all of them set serve's settings stay the defaults: the test
// suites run serve with the harness's environment.
func TestServeConfigIgnoresOtherVariables(t *testing.T) {
	used := map[string][]string{}
	re := regexp.MustCompile(`CONFGATE_[A-Z0-9_]*[A-Z0-9]`)
	err := filepath.WalkDir("../..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("../..", p)
		if d.IsDir() {
			switch d.Name() {
			case ".git", ".cache", "node_modules", ".venv", "__pycache__", "testdata":
				return filepath.SkipDir
			}
			// This package maps the settings.
			if rel == filepath.Join("cmd", "confgate") {
				return filepath.SkipDir
			}
			return nil
		}
		// Code, scripts and config only: Markdown documents the settings'
		// variables on purpose.
		switch filepath.Ext(p) {
		case ".go", ".sh", ".py", ".js", ".mjs", ".ts", ".yaml", ".yml", ".tpl", ".toml", "":
		default:
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.IndexByte(b, 0) >= 0 {
			return nil // a binary, such as a built confgate
		}
		for _, name := range re.FindAllString(string(b), -1) {
			if !slices.Contains(used[name], rel) {
				used[name] = append(used[name], rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(used["CONFGATE_KAFKA_BROKERS"]) == 0 {
		t.Fatal("the scan found no use of the test harness's CONFGATE_KAFKA_BROKERS: it does not read the repository")
	}
	// The client verbs' variables, defined in this package.
	for _, name := range []string{addrEnv, tokenEnv, tokenFileEnv, kafkaPasswordEnv} {
		used[name] = append(used[name], "cmd/confgate")
	}

	cmd := newRootCmd(&Env{})
	serve, _, err := cmd.Find([]string{"serve"})
	if err != nil {
		t.Fatal(err)
	}
	byEnv := map[string]string{}
	for name, s := range settings(serve) {
		byEnv[s.env] = name
	}
	env := map[string]string{}
	for name, where := range used {
		if name == configEnv || name == kafkaPasswordEnv {
			continue // serve's own, not settings
		}
		if setting, ok := byEnv[name]; ok {
			if _, ok := reusedEnv[name]; !ok {
				t.Errorf("%s, used in %s, is also serve's --%s: rename one, or list it in reusedEnv", name, strings.Join(where, ", "), setting)
			}
			continue
		}
		env[name] = "not-a-setting"
	}
	want, _ := printConfig(t, nil)
	got, text := printConfig(t, env)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("with the repository's other variables set (%d), the settings change:\n%s", len(env), text)
	}
}

// serve runs on settings from the file and the environment alone: the
// brokers from the environment, the rest (SASL included) from the file,
// the password from its variable; the start-up log, JSON as the file
// says, names where settings came from and never shows the password.
// The topic, the SASL user and the gateway's name are written as YAML
// would retype them (1.10, 0123, 1e3): the gateway consumes topic 1.10,
// logs in as 0123 and signs its writes 1e3.
func TestServeConfigRuns(t *testing.T) {
	const pass = "s3cret-from-env"
	k, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-256", "0123", pass))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	file := configFile(t, `topic: 1.10
gateway-name: 1e3
create-topic: true
listen: 127.0.0.1:0
admin-listen: ""
probe-interval: 200ms
shutdown-grace: 2s
kafka-sasl-mechanism: SCRAM-SHA-256
kafka-sasl-user: 0123
output: json
`)
	env := map[string]string{
		configEnv:          file,
		"CONFGATE_BROKERS": strings.Join(k.ListenAddrs(), ","),
		kafkaPasswordEnv:   pass,
	}
	n := startNodeCmdEnv(t, envMap(env), "serve")
	if n.Topic != "1.10" || !reflect.DeepEqual(n.Kafka, k.ListenAddrs()) {
		t.Fatalf("serve runs topic %q on %v, want 1.10 on %v", n.Topic, n.Kafka, k.ListenAddrs())
	}
	c := cli{t: t, addr: n.GRPC}
	c.ok("put", "--wait", "cfg/a", "1")
	got := jsonLines(t, c.ok("get", "-o", "json", "cfg/a"))
	if len(got) != 1 || got[0]["value"] != "1" {
		t.Fatalf("get -o json: %v", got)
	}
	signed := ""
	for _, h := range got[0]["headers"].([]any) {
		if h := h.(map[string]any); h["key"] == "confgate-gateway" {
			signed, _ = h["value"].(string)
		}
	}
	if signed != "1e3" {
		t.Errorf("the write is signed by gateway %q, want 1e3: %v", signed, got[0]["headers"])
	}
	if code := n.stop(); code != 0 {
		t.Fatalf("exit %d: %s", code, n.stderr)
	}
	logs := n.stderr.String()
	if strings.Contains(logs, pass) {
		t.Errorf("the log shows the password")
	}
	var loaded map[string]any
	for _, l := range jsonLines(t, logs) { // output: json is in force
		if l["msg"] == "settings loaded" {
			loaded = l
		}
	}
	fromFile, _ := loaded["from_file"].(string)
	if loaded["file"] != file || loaded["from_env"] != "brokers" || !strings.Contains(fromFile, "kafka-sasl-user") {
		t.Errorf("no start-up line says where settings came from:\n%s", logs)
	}
}

// dev reads flags only: serve's variables and $CONFGATE_CONFIG (here a
// file that does not exist) change nothing, and it has no --config.
func TestDevIgnoresServeConfig(t *testing.T) {
	env := envMap(map[string]string{
		configEnv:               "/nonexistent/serve.yaml",
		"CONFGATE_TOPIC":        "from-env",
		"CONFGATE_LISTEN":       "256.0.0.1:1",
		"CONFGATE_ADMIN_LISTEN": "256.0.0.1:1",
		"CONFGATE_LOG_LEVEL":    "loud",
	})
	n := startNodeCmdEnv(t, env, "dev", "--listen", "127.0.0.1:0", "--admin-listen", "", "--no-seed", "--log-level", "warn")
	if n.Topic != "confgate.config" {
		t.Errorf("dev runs topic %q, want its default", n.Topic)
	}
	r := runEnv(t, nil, "dev", "--config", "x.yaml")
	if r.code != exitFailure || !strings.Contains(r.stderr, "unknown flag: --config") {
		t.Errorf("dev --config: exit %d: %s", r.code, r.stderr)
	}
}

// serve --help says where settings come from.
func TestServeHelpMentionsConfig(t *testing.T) {
	r := runEnv(t, nil, "serve", "--help")
	for _, w := range []string{"CONFGATE_CACHE_BYTES", "--config", "$CONFGATE_CONFIG", "--print-config", "A flag beats the"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("serve --help does not mention %q", w)
		}
	}
}
