package test

import (
	"maps"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestTopicConfig: kafka.topicConfig reaches the gateway as the map the
// values hold, whatever YAML type each value has. The rendered
// --topic-config is handed to `confgate serve --print-config`, which
// parses it with the gateway's own flag parser (pflag's key=value list,
// split as CSV, so an item holding a comma must be quoted) and prints the
// map it got. A number in a values file is a float64 to helm: printed as
// it is, 3600000 would become 3.6e+06, which Kafka refuses.
func TestTopicConfig(t *testing.T) {
	for _, tc := range []struct {
		name   string
		values string   // kafka.topicConfig, YAML
		set    []string // helm --set arguments (numbers are int64 there)
		want   map[string]string
	}{
		{
			name:   "whole numbers",
			values: "{segment.ms: 3600000, max.message.bytes: 10485760, retention.ms: -1, delete.retention.ms: 86400000}",
			want:   map[string]string{"segment.ms": "3600000", "max.message.bytes": "10485760", "retention.ms": "-1", "delete.retention.ms": "86400000"},
		},
		{
			name:   "the largest whole number a float64 holds exactly",
			values: "{retention.bytes: 9007199254740991}",
			want:   map[string]string{"retention.bytes": "9007199254740991"},
		},
		{
			name:   "fractions and exponents",
			values: "{min.cleanable.dirty.ratio: 0.1, a.ratio: 5e-1, b.ratio: 1e-7}",
			want:   map[string]string{"min.cleanable.dirty.ratio": "0.1", "a.ratio": "0.5", "b.ratio": "1e-07"},
		},
		{
			name:   "a whole number written with an exponent",
			values: "{segment.bytes: 1.073741824e+9}",
			want:   map[string]string{"segment.bytes": "1073741824"},
		},
		{
			name:   "booleans and strings",
			values: `{unclean.leader.election.enable: false, compression.type: zstd, min.insync.replicas: "2"}`,
			want:   map[string]string{"unclean.leader.election.enable": "false", "compression.type": "zstd", "min.insync.replicas": "2"},
		},
		{
			name:   "one item holding commas",
			values: `{follower.replication.throttled.replicas: "0:1,1:2"}`,
			want:   map[string]string{"follower.replication.throttled.replicas": "0:1,1:2"},
		},
		{
			name:   "items holding commas and = among others",
			values: `{follower.replication.throttled.replicas: "0:1,1:2", leader.replication.throttled.replicas: "*", x.y: "a=b", segment.ms: 3600000}`,
			want:   map[string]string{"follower.replication.throttled.replicas": "0:1,1:2", "leader.replication.throttled.replicas": "*", "x.y": "a=b", "segment.ms": "3600000"},
		},
		{
			name:   "one item holding =",
			values: `{x.y: "a=b"}`,
			want:   map[string]string{"x.y": "a=b"},
		},
		{
			name:   "from --set",
			values: "{}",
			set:    []string{`kafka.topicConfig.segment\.ms=3600000`, `kafka.topicConfig.retention\.bytes=9223372036854775807`},
			want:   map[string]string{"segment.ms": "3600000", "retention.bytes": "9223372036854775807"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			values := []string{
				filepath.Join(valuesDir, "defaults.yaml"),
				valuesFile(t, "kafka: {createTopic: true, topicConfig: "+tc.values+"}"),
			}
			var extra []string
			for _, s := range tc.set {
				extra = append(extra, "--set", s)
			}
			out, err := helmTemplate(t, values, extra...)
			if err != nil {
				t.Fatal(err)
			}
			r, err := decode(out)
			if err != nil {
				t.Fatal(err)
			}
			args := parseArgs(t, &r.deployments[0].Spec.Template.Spec.Containers[0], serveFlags(t))
			flag := args["topic-config"]
			if len(flag) != 1 {
				t.Fatalf("--topic-config: %q, want one", flag)
			}
			got := gatewayTopicConfig(t, flag[0])
			if !maps.Equal(got, tc.want) {
				t.Errorf("--topic-config=%s is %v to the gateway, want %v", flag[0], got, tc.want)
			}
		})
	}
}

// gatewayTopicConfig is the map `confgate serve` makes of a --topic-config
// value, as --print-config shows it.
func gatewayTopicConfig(t *testing.T, value string) map[string]string {
	t.Helper()
	out, err := confgateCmd(t, "serve", "--print-config", "--brokers=kafka:9092", "--topic=config", "--topic-config="+value)
	if err != nil {
		t.Fatal(err)
	}
	var settings map[string]any
	if err := yaml.Unmarshal(out, &settings); err != nil {
		t.Fatalf("--print-config: %v\n%s", err, out)
	}
	m, ok := settings["topic-config"].(map[string]any)
	if !ok {
		t.Fatalf("--print-config: topic-config is %T %v, want a map\n%s", settings["topic-config"], settings["topic-config"], out)
	}
	got := map[string]string{}
	for k, v := range m {
		s, ok := v.(string)
		if !ok {
			t.Fatalf("--print-config: topic-config %s is %T %v, want a string", k, v, v)
		}
		got[k] = s
	}
	return got
}
