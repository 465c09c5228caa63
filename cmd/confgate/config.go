package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/v2"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	yamlv3 "go.yaml.in/yaml/v3"
)

// serve's settings come from four layers, highest first: the command line,
// the environment (CONFGATE_ plus the flag's name), a YAML file (--config
// or $CONFGATE_CONFIG) and the flags' defaults. koanf merges the layers;
// this file says which flags are settings, maps names, and sets each
// flag that no flag on the command line set from the merged value, so the
// rest of serve reads its flags as before. dev reads flags only: a
// developer's shell, or a test harness, must not reconfigure it unseen.
//
// Every value reaches its flag's parser as the text written, never as
// YAML typed it: YAML reads `topic: 1.10` as the float 1.1, `0123` as the
// octal 83 and `1e3` as 1000, which would silently rename a topic or a
// SASL user. So the file is read as yaml.Nodes (parseFile) and only the
// structure (mapping, list, null) is taken from YAML; the environment is
// text already.

const (
	// envPrefix starts every setting's environment variable.
	envPrefix = "CONFGATE_"
	// configEnv names the config file when --config is not given.
	configEnv = "CONFGATE_CONFIG"
	// koanfDelim splits koanf's key paths. Settings are flat, so it only
	// shows in nested values (--topic-config's keys hold dots, which is
	// harmless: only top-level keys are ever looked up).
	koanfDelim = "."
)

// serveGlobals are the persistent flags that are serve settings too; the
// others (--addr, --timeout, the client --tls-* and --token* flags) are
// for the client verbs and serve ignores them, so neither the environment
// nor the file may set them through serve (CONFGATE_ADDR and
// CONFGATE_TOKEN keep their client meaning).
var serveGlobals = []string{"log-level", "output"}

// notSettings are serve's own flags that are not settings.
var notSettings = map[string]bool{"config": true, "print-config": true, "help": true}

// serveConfig is serve's --config and --print-config, and what loading
// the layers found, for the start-up log and --print-config.
type serveConfig struct {
	file        string // --config
	print       bool   // --print-config, in either mode
	changedOnly bool   // --print-config=changed

	path   string            // the file read, from --config or $CONFGATE_CONFIG; "" for none
	source map[string]string // setting -> where its value came from; absent: the default
}

func (c *serveConfig) register(fs *pflag.FlagSet) {
	fs.StringVar(&c.file, "config", "", "YAML file of settings, keyed by flag name (e.g. cache-bytes: 64MiB); the environment (CONFGATE_<FLAG>) and flags override it (env "+configEnv+")")
	f := fs.VarPF(printMode{c}, "print-config", "", "print the effective settings as YAML (the format --config reads; secrets redacted) and exit without starting; --print-config=changed prints only the settings a flag, the environment or the file gave, so a saved copy does not pin the other defaults")
	f.NoOptDefVal = "all"
}

// printMode is --print-config's value: all settings (the flag alone, as
// before it took a value, or =true), only those given (=changed), or
// none (=false).
type printMode struct{ c *serveConfig }

func (m printMode) String() string {
	switch {
	case !m.c.print:
		return ""
	case m.c.changedOnly:
		return "changed"
	}
	return "all"
}

func (m printMode) Set(s string) error {
	switch s {
	case "all":
		m.c.print, m.c.changedOnly = true, false
		return nil
	case "changed":
		m.c.print, m.c.changedOnly = true, true
		return nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want all or changed, not %q", s)
	}
	m.c.print, m.c.changedOnly = b, false
	return nil
}

// Type is empty so that help shows --print-config[=all]: a type name
// there would read as a value that may follow after a space, which the
// optional value does not allow (--print-config=changed).
func (m printMode) Type() string { return "" }

// setting is one flag that the environment and the file may set.
type setting struct {
	flag *pflag.Flag
	env  string // its environment variable
}

// settings are cmd's settings by name: its own flags and serveGlobals.
func settings(cmd *cobra.Command) map[string]setting {
	out := map[string]setting{}
	add := func(f *pflag.Flag) { out[f.Name] = setting{flag: f, env: envName(f.Name)} }
	cmd.NonInheritedFlags().VisitAll(func(f *pflag.Flag) {
		if !notSettings[f.Name] {
			add(f)
		}
	})
	for _, name := range serveGlobals {
		if f := cmd.Flags().Lookup(name); f != nil {
			add(f)
		}
	}
	return out
}

// envName is a flag's environment variable: --cache-bytes is
// CONFGATE_CACHE_BYTES.
func envName(flag string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// load merges the environment and the config file under the command line
// and sets every flag the command line left alone to its merged value.
// getenv is the only way the environment is read, and only the settings'
// own variables are: other CONFGATE_* variables (a test harness's
// CONFGATE_KAFKA_BROKERS, the client's CONFGATE_ADDR) never become
// settings. An empty variable counts as unset.
func (c *serveConfig) load(cmd *cobra.Command, getenv func(string) string) error {
	set := settings(cmd)
	fs := cmd.Flags()

	c.path = c.file
	pathFrom := "--config"
	if !fs.Changed("config") {
		c.path, pathFrom = getenv(configEnv), "$"+configEnv
	}
	file := koanf.New(koanfDelim)
	var lines map[string]int // the file's keys' lines, for errors
	if c.path != "" {
		b, err := os.ReadFile(c.path)
		if err != nil {
			return fmt.Errorf("config file (%s): %w", pathFrom, err)
		}
		var vals map[string]any
		vals, lines, err = parseFile(b)
		if err != nil {
			return fmt.Errorf("config file %s: %w", c.path, err)
		}
		if err := checkKeys(c.path, lines, vals, set); err != nil {
			return err
		}
		if err := file.Load(fileValues(vals), nil); err != nil {
			return fmt.Errorf("config file %s: %w", c.path, err)
		}
	}

	byEnv := map[string]string{}
	for name, s := range set {
		byEnv[s.env] = name
	}
	environ := koanf.New(koanfDelim)
	if err := environ.Load(env.Provider(koanfDelim, env.Opt{
		Prefix: envPrefix,
		EnvironFunc: func() []string {
			var out []string
			for _, s := range set {
				if v := getenv(s.env); v != "" {
					out = append(out, s.env+"="+v)
				}
			}
			return out
		},
		TransformFunc: func(k, v string) (string, any) { return byEnv[k], v },
	}), nil); err != nil {
		return err
	}

	// Without a Koanf to consult, posflag takes only the flags the command
	// line changed: the defaults stay in the flags themselves.
	flags := koanf.New(koanfDelim)
	if err := flags.Load(posflag.ProviderWithFlag(fs, koanfDelim, nil, func(f *pflag.Flag) (string, any) {
		if _, ok := set[f.Name]; !ok {
			return "", nil
		}
		return f.Name, posflag.FlagVal(fs, f)
	}), nil); err != nil {
		return err
	}

	merged := koanf.New(koanfDelim)
	for _, layer := range []*koanf.Koanf{file, environ, flags} { // lowest first: later layers win
		if err := merged.Merge(layer); err != nil {
			return err
		}
	}

	c.source = map[string]string{}
	names := make([]string, 0, len(set))
	for name := range set {
		names = append(names, name)
	}
	slices.Sort(names) // the first error is the same every run
	for _, name := range names {
		s := set[name]
		switch {
		case flags.Exists(name):
			c.source[name] = "--" + name
			continue
		case environ.Exists(name):
			c.source[name] = "$" + s.env
		case file.Exists(name):
			c.source[name] = "file"
		default:
			continue
		}
		if err := setValue(s.flag, merged.Get(name)); err != nil {
			if c.source[name] == "file" {
				return fmt.Errorf("config file %s: line %d: %s: %w", c.path, lines[name], name, err)
			}
			return fmt.Errorf("$%s (--%s): %w", s.env, name, err)
		}
		// As if given: checks that tell given flags from defaults
		// (serverAuth.given) see settings from the file and environment.
		s.flag.Changed = true
	}
	return nil
}

// checkKeys refuses top-level keys of the file that are not settings,
// naming the file, the line and the key. vals are the file's settings,
// lines their keys' lines.
func checkKeys(path string, lines map[string]int, vals map[string]any, set map[string]setting) error {
	var unknown []string
	for k := range vals {
		if _, ok := set[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	slices.SortStableFunc(unknown, func(a, b string) int { return lines[a] - lines[b] })
	k := unknown[0]
	where := fmt.Sprintf("%s: line %d", path, lines[k])
	switch {
	case k == kafkaPasswordName:
		return fmt.Errorf("config file %s: %s: the SASL password is read only from $%s, never from a file", where, k, kafkaPasswordEnv)
	case len(unknown) > 1:
		return fmt.Errorf("config file %s: unknown key %q (and %d more: %s); keys are serve's flag names (confgate serve --help)", where, k, len(unknown)-1, strings.Join(unknown[1:], ", "))
	}
	return fmt.Errorf("config file %s: unknown key %q; keys are serve's flag names (confgate serve --help)", where, k)
}

// kafkaPasswordName is how --print-config and errors name the SASL
// password, which has no flag.
const kafkaPasswordName = "kafka-sasl-password"

// nested stands for a list or map inside a list or map, which no flag
// takes, by its kind: setValue refuses it naming the setting, after
// checkKeys has had its say on the keys. Keeping only the kind also
// bounds what aliases can expand to.
type nested string

// parseFile reads a config file: a YAML mapping of settings, at most one
// document. Each value is the text written, whatever YAML would type it
// as (1.10, 0123, 1e3, no, .inf stay those strings; quotes only delimit),
// nil for a null (~, null, or nothing), or for a list or a map
// ([]any, map[string]any) the same of each item. lines are the keys'
// lines. Aliases are followed; merge keys (<<) are refused rather than
// half-supported.
func parseFile(b []byte) (vals map[string]any, lines map[string]int, err error) {
	vals, lines = map[string]any{}, map[string]int{}
	dec := yamlv3.NewDecoder(bytes.NewReader(b))
	var doc yamlv3.Node
	switch err := dec.Decode(&doc); {
	case errors.Is(err, io.EOF):
		return vals, lines, nil // empty, or comments only
	case err != nil:
		return nil, nil, err
	}
	var next yamlv3.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, nil, fmt.Errorf("line %d: a second YAML document (---): the settings are one mapping", next.Line)
	case !errors.Is(err, io.EOF):
		return nil, nil, err
	}
	if len(doc.Content) == 0 {
		return vals, lines, nil
	}
	top := deref(doc.Content[0])
	if isNull(top) {
		return vals, lines, nil // a document of only --- or ~
	}
	if top.Kind != yamlv3.MappingNode {
		return nil, nil, fmt.Errorf("line %d: want a mapping of settings (name: value), not %s", top.Line, kindName(top))
	}
	err = eachPair(top, "", func(k string, kn, v *yamlv3.Node) error {
		if first, ok := lines[k]; ok {
			return fmt.Errorf("line %d: %s is set twice (first on line %d)", kn.Line, k, first)
		}
		lines[k] = kn.Line
		val, err := nodeText(v, k)
		vals[k] = val
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return vals, lines, nil
}

// eachPair calls fn with each key of a mapping, as written, its node and
// its value's. in is the setting the mapping is the value of, for errors;
// "" for the file's.
func eachPair(m *yamlv3.Node, in string, fn func(k string, kn, v *yamlv3.Node) error) error {
	if in != "" {
		in += ": "
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		kn, v := deref(m.Content[i]), m.Content[i+1]
		switch {
		case kn.Kind != yamlv3.ScalarNode:
			return fmt.Errorf("line %d: %sa key must be a single value, not %s", kn.Line, in, kindName(kn))
		case kn.ShortTag() == "!!merge":
			return fmt.Errorf("line %d: %smerge keys (<<) are not supported: write the keys out", kn.Line, in)
		}
		if err := fn(kn.Value, kn, v); err != nil {
			return err
		}
	}
	return nil
}

// nodeText is the value of the setting name as parseFile describes it.
func nodeText(n *yamlv3.Node, name string) (any, error) {
	n = deref(n)
	switch n.Kind {
	case yamlv3.SequenceNode:
		out := make([]any, len(n.Content))
		for i, e := range n.Content {
			out[i] = itemText(e)
		}
		return out, nil
	case yamlv3.MappingNode:
		out := map[string]any{}
		err := eachPair(n, name, func(k string, kn, v *yamlv3.Node) error {
			if _, ok := out[k]; ok {
				return fmt.Errorf("line %d: %s: %s is set twice", kn.Line, name, k)
			}
			out[k] = itemText(v)
			return nil
		})
		return out, err
	}
	return itemText(n), nil
}

// itemText is a scalar's text, nil for null, or for a list or map only
// its kind (nested).
func itemText(n *yamlv3.Node) any {
	n = deref(n)
	switch {
	case isNull(n):
		return nil
	case n.Kind == yamlv3.ScalarNode:
		return n.Value
	}
	return nested(kindName(n))
}

// deref follows an alias to its anchor's node.
func deref(n *yamlv3.Node) *yamlv3.Node {
	for n.Kind == yamlv3.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// isNull says whether a node is YAML's null: ~, null or nothing, unquoted.
func isNull(n *yamlv3.Node) bool {
	return n.Kind == yamlv3.ScalarNode && n.ShortTag() == "!!null"
}

// kindName names a node's kind for errors.
func kindName(n *yamlv3.Node) string {
	switch n.Kind {
	case yamlv3.SequenceNode:
		return "a list"
	case yamlv3.MappingNode:
		return "a map"
	}
	return "a single value"
}

// fileValues hands koanf the values parseFile read, which its own YAML
// parser would have typed.
type fileValues map[string]any

// ReadBytes is never called: koanf reads a provider's bytes only when
// given a parser.
func (v fileValues) ReadBytes() ([]byte, error) {
	return nil, errors.New("config file values are already parsed")
}

func (v fileValues) Read() (map[string]any, error) { return v, nil }

var _ koanf.Provider = fileValues(nil)

// setValue sets a flag from a merged value: a string from the environment
// (lists comma-separated, maps k=v,k=v, as on the command line) or what
// parseFile read (text, nil, a list or a map of text). The flag's own
// parser checks it, as on the command line, so sizes take units and
// durations need them everywhere.
func setValue(f *pflag.Flag, v any) error {
	sv, isList := f.Value.(pflag.SliceValue)
	switch v := v.(type) {
	case nil:
		return errors.New(`no value (null): write "" for an empty string, [] for an empty list`)
	case []any:
		if !isList {
			return fmt.Errorf("want %s, not a list", typeName(f))
		}
		items := make([]string, len(v))
		for i, e := range v {
			s, err := scalar(e)
			if err != nil {
				return fmt.Errorf("item %d: %w", i+1, err)
			}
			items[i] = s
		}
		return sv.Replace(items)
	case map[string]any:
		if f.Value.Type() != "stringToString" {
			return fmt.Errorf("want %s, not a map", typeName(f))
		}
		// The first Set replaces the default, later ones add to it. An
		// empty map leaves the default, which is empty (--topic-config).
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			s, err := scalar(v[k])
			if err != nil {
				return fmt.Errorf("%s: %w", k, err)
			}
			if err := f.Value.Set(csvField(k + "=" + s)); err != nil {
				return err
			}
		}
		return nil
	}
	s, err := scalar(v)
	if err != nil {
		return fmt.Errorf("want %s: %w", typeName(f), err)
	}
	if isList {
		items, err := splitList(s)
		if err != nil {
			return fmt.Errorf("want %s: %w", typeName(f), err)
		}
		return sv.Replace(items)
	}
	if isInt(f) {
		if err := notOctal(s); err != nil {
			return fmt.Errorf("want %s: %w", typeName(f), err)
		}
	}
	if err := f.Value.Set(s); err != nil {
		return fmt.Errorf("want %s: %w", typeName(f), err)
	}
	return nil
}

// scalar is one value of the file or the environment, as a flag would
// get it on the command line.
func scalar(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case nil:
		return "", errors.New("no value (null)")
	case nested:
		return "", fmt.Errorf("want a single value, not %s", string(v))
	}
	return "", fmt.Errorf("want a single value, not %T", v)
}

// isInt says whether a flag takes an integer.
func isInt(f *pflag.Flag) bool {
	switch f.Value.Type() {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return true
	}
	return false
}

// leadingZero matches an integer written with a leading zero.
var leadingZero = regexp.MustCompile(`^[+-]?0[0-9_]+$`)

// notOctal refuses an integer with a leading zero. pflag parses integers
// as Go does (base 0), so 0123 would be the octal 83: on the command line
// that is pflag's business, but in a file or a variable, where YAML and
// shells make every other 0123 the decimal 123, a silent 83 would be a
// trap. 0o123 (octal), 0x1f (hex) and 0 itself stay as pflag reads them.
func notOctal(s string) error {
	if !leadingZero.MatchString(s) {
		return nil
	}
	sign, digits := "", s
	if s[0] == '+' || s[0] == '-' {
		sign, digits = s[:1], s[1:]
	}
	dec := strings.TrimLeft(digits, "0_")
	if dec == "" {
		dec = "0"
	}
	return fmt.Errorf("%q has a leading zero, which would read as octal: write %s%s for decimal, or %s0o%s for octal", s, sign, dec, sign, digits[1:])
}

// splitList splits a comma-separated list the way pflag splits a
// --brokers value (CSV: quote an item that holds a comma).
func splitList(s string) ([]string, error) {
	if s == "" {
		return []string{}, nil
	}
	return csv.NewReader(strings.NewReader(s)).Read()
}

// csvField quotes s for pflag's map parser when it holds a comma or quote.
func csvField(s string) string {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	_ = w.Write([]string{s}) // a bytes.Buffer does not fail
	w.Flush()
	return strings.TrimSuffix(b.String(), "\n")
}

// typeName says in words what a flag takes, for errors.
func typeName(f *pflag.Flag) string {
	switch t := f.Value.Type(); t {
	case "size":
		return "a size such as 1048576 or 64MiB"
	case "duration":
		return "a duration such as 500ms or 5s"
	case "bool":
		return "true or false"
	case "int", "int16", "int32", "int64", "uint32", "uint64":
		return "an integer"
	case "stringSlice", "stringArray":
		return "a list"
	case "stringToString":
		return "a map of key: value"
	default:
		return "a " + t
	}
}

// logSources says at start which settings came from the file and the
// environment: names only, never values.
func (c *serveConfig) logSources(log *slog.Logger) {
	var fromFile, fromEnv []string
	for name, src := range c.source {
		switch {
		case src == "file":
			fromFile = append(fromFile, name)
		case strings.HasPrefix(src, "$"):
			fromEnv = append(fromEnv, name)
		}
	}
	if len(fromFile)+len(fromEnv) == 0 {
		return
	}
	slices.Sort(fromFile)
	slices.Sort(fromEnv)
	log.Info("settings loaded", "file", c.path, "from_file", strings.Join(fromFile, ","), "from_env", strings.Join(fromEnv, ","))
}

// write prints the effective settings as YAML that --config reads back:
// every setting with its value (with --print-config=changed only those a
// flag, the environment or the file gave), where a value did not come
// from the default a comment says where it came from. Text is always
// quoted, so any YAML reader gets back the same string (1.10 stays 1.10).
// Secrets are never printed: the SASL password, which only the
// environment carries, shows as a comment saying whether it is set.
func (c *serveConfig) write(w io.Writer, cmd *cobra.Command, getenv func(string) string) error {
	set := settings(cmd)
	names := make([]string, 0, len(set))
	for name := range set {
		if !c.changedOnly || c.source[name] != "" {
			names = append(names, name)
		}
	}
	slices.Sort(names)

	m := &yamlv3.Node{Kind: yamlv3.MappingNode}
	head := []string{"Effective settings of confgate serve: flag > environment (CONFGATE_<FLAG>) > config file > default."}
	if c.changedOnly {
		head = append(head, "Only those a flag, the environment or the file gave; the others take their defaults.")
	}
	if c.path != "" {
		head = append(head, "Config file: "+c.path)
	}
	if getenv(kafkaPasswordEnv) != "" {
		head = append(head, kafkaPasswordName+": <redacted> (from $"+kafkaPasswordEnv+", its only source)")
	}
	m.HeadComment = strings.Join(head, "\n")
	if len(names) == 0 {
		m.Style = yamlv3.FlowStyle // {}: still a mapping --config reads
	}
	for _, name := range names {
		v, err := printValue(cmd.Flags(), set[name].flag)
		if err != nil {
			return fmt.Errorf("--print-config: %s: %w", name, err)
		}
		k := &yamlv3.Node{Kind: yamlv3.ScalarNode, Value: name}
		if src := c.source[name]; src != "" {
			// On the key of a block list or map: the emitter would
			// put a comment on the value after its last item.
			if v.Style == yamlv3.FlowStyle || v.Kind == yamlv3.ScalarNode {
				v.LineComment = src
			} else {
				k.LineComment = src
			}
		}
		m.Content = append(m.Content, k, v)
	}
	enc := yamlv3.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(&yamlv3.Node{Kind: yamlv3.DocumentNode, Content: []*yamlv3.Node{m}}); err != nil {
		return err
	}
	return enc.Close()
}

// printValue is a flag's value as a YAML node of the kind setValue reads:
// integers and booleans plain, everything else (strings, sizes,
// durations, list items, map values) double-quoted text.
func printValue(fs *pflag.FlagSet, f *pflag.Flag) (*yamlv3.Node, error) {
	switch t := f.Value.Type(); {
	case t == "stringToString":
		m, err := fs.GetStringToString(f.Name)
		if err != nil {
			return nil, err
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		n := &yamlv3.Node{Kind: yamlv3.MappingNode}
		for _, k := range keys {
			// A key is quoted only where YAML needs it, as the
			// encoder does for the !!str tag.
			n.Content = append(n.Content, &yamlv3.Node{Kind: yamlv3.ScalarNode, Tag: "!!str", Value: k}, quoted(m[k]))
		}
		if len(keys) == 0 {
			n.Style = yamlv3.FlowStyle // {}
		}
		return n, nil
	case t == "bool":
		b, err := strconv.ParseBool(f.Value.String())
		if err != nil {
			return nil, err
		}
		return &yamlv3.Node{Kind: yamlv3.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(b)}, nil
	case isInt(f):
		return &yamlv3.Node{Kind: yamlv3.ScalarNode, Tag: "!!int", Value: f.Value.String()}, nil
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		n := &yamlv3.Node{Kind: yamlv3.SequenceNode}
		for _, e := range sv.GetSlice() {
			n.Content = append(n.Content, quoted(e))
		}
		if len(n.Content) == 0 {
			n.Style = yamlv3.FlowStyle // []
		}
		return n, nil
	}
	return quoted(f.Value.String()), nil // strings, durations, sizes: as the flag prints them
}

// quoted is text as a double-quoted YAML scalar.
func quoted(s string) *yamlv3.Node {
	return &yamlv3.Node{Kind: yamlv3.ScalarNode, Tag: "!!str", Style: yamlv3.DoubleQuotedStyle, Value: s}
}
