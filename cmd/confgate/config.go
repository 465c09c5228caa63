package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/posflag"
	"github.com/knadh/koanf/providers/rawbytes"
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
	file  string // --config
	print bool   // --print-config

	path   string            // the file read, from --config or $CONFGATE_CONFIG; "" for none
	source map[string]string // setting -> where its value came from; absent: the default
}

func (c *serveConfig) register(fs *pflag.FlagSet) {
	fs.StringVar(&c.file, "config", "", "YAML file of settings, keyed by flag name (e.g. cache-bytes: 64MiB); the environment (CONFGATE_<FLAG>) and flags override it (env "+configEnv+")")
	fs.BoolVar(&c.print, "print-config", false, "print the effective settings as YAML (the format --config reads; secrets redacted) and exit without starting")
}

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
	if c.path != "" {
		b, err := os.ReadFile(c.path)
		if err != nil {
			return fmt.Errorf("config file (%s): %w", pathFrom, err)
		}
		if err := file.Load(rawbytes.Provider(b), yaml.Parser()); err != nil {
			return fmt.Errorf("config file %s: %w", c.path, err)
		}
		if err := checkKeys(c.path, b, file.Raw(), set); err != nil {
			return err
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
				return fmt.Errorf("config file %s: %s: %w", c.path, name, err)
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
// naming the file, the line and the key. raw is the parsed file, b its text.
func checkKeys(path string, b []byte, raw map[string]any, set map[string]setting) error {
	var unknown []string
	for k := range raw {
		if _, ok := set[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	lines := keyLines(b)
	slices.SortStableFunc(unknown, func(a, b string) int { return lines[a] - lines[b] })
	k := unknown[0]
	where := path
	if l := lines[k]; l > 0 {
		where = fmt.Sprintf("%s: line %d", path, l)
	}
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

// keyLines are the lines of the top-level keys of a YAML mapping, for
// errors; none when the text is not one.
func keyLines(b []byte) map[string]int {
	var doc yamlv3.Node
	out := map[string]int{}
	if yamlv3.Unmarshal(b, &doc) != nil || len(doc.Content) == 0 || doc.Content[0].Kind != yamlv3.MappingNode {
		return out
	}
	m := doc.Content[0].Content
	for i := 0; i+1 < len(m); i += 2 {
		out[m[i].Value] = m[i].Line
	}
	return out
}

// setValue sets a flag from a merged value: a string from the environment
// (lists comma-separated, maps k=v,k=v, as on the command line) or what
// the YAML file holds (a scalar, a list, a map). The flag's own parser
// checks it, so sizes take units and durations need them everywhere.
func setValue(f *pflag.Flag, v any) error {
	sv, isList := f.Value.(pflag.SliceValue)
	switch v := v.(type) {
	case nil:
		return errors.New(`no value: write "" for an empty string, [] for an empty list`)
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
	if err := f.Value.Set(s); err != nil {
		return fmt.Errorf("want %s: %w", typeName(f), err)
	}
	return nil
}

// scalar is a YAML scalar as a flag would get it on the command line.
func scalar(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(v), nil
	case nil:
		return "", errors.New("no value")
	}
	return "", fmt.Errorf("want a single value, not %T", v)
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
// every setting with its value, where a value did not come from the
// default a comment says where it came from. Secrets are never printed:
// the SASL password, which only the environment carries, shows as a
// comment saying whether it is set.
func (c *serveConfig) write(w io.Writer, cmd *cobra.Command, getenv func(string) string) error {
	set := settings(cmd)
	names := make([]string, 0, len(set))
	for name := range set {
		names = append(names, name)
	}
	slices.Sort(names)

	m := &yamlv3.Node{Kind: yamlv3.MappingNode}
	head := []string{"Effective settings of confgate serve: flag > environment (CONFGATE_<FLAG>) > config file > default."}
	if c.path != "" {
		head = append(head, "Config file: "+c.path)
	}
	if getenv(kafkaPasswordEnv) != "" {
		head = append(head, kafkaPasswordName+": <redacted> (from $"+kafkaPasswordEnv+", its only source)")
	}
	m.HeadComment = strings.Join(head, "\n")
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

// printValue is a flag's value as a YAML node of the kind setValue reads.
func printValue(fs *pflag.FlagSet, f *pflag.Flag) (*yamlv3.Node, error) {
	n := &yamlv3.Node{}
	var v any
	switch t := f.Value.Type(); {
	case t == "stringToString":
		m, err := fs.GetStringToString(f.Name)
		if err != nil {
			return nil, err
		}
		v = m
	case t == "bool":
		b, err := strconv.ParseBool(f.Value.String())
		if err != nil {
			return nil, err
		}
		v = b
	case t == "int" || t == "int16" || t == "int32" || t == "int64" || t == "uint32" || t == "uint64":
		return &yamlv3.Node{Kind: yamlv3.ScalarNode, Tag: "!!int", Value: f.Value.String()}, nil
	default:
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			v = sv.GetSlice()
		} else {
			v = f.Value.String() // strings, durations, sizes: as the flag prints them
		}
	}
	if err := n.Encode(v); err != nil {
		return nil, err
	}
	if n.Kind == yamlv3.SequenceNode || n.Kind == yamlv3.MappingNode {
		if len(n.Content) == 0 {
			n.Style = yamlv3.FlowStyle // [] and {}
		}
	}
	return n, nil
}
