package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestGet(t *testing.T) {
	vcs := func(rev, modified string) func() (*debug.BuildInfo, bool) {
		return func() (*debug.BuildInfo, bool) {
			return &debug.BuildInfo{
				GoVersion: "go1.99.1",
				Main:      debug.Module{Version: "(devel)"},
				Settings: []debug.BuildSetting{
					{Key: "vcs.revision", Value: rev},
					{Key: "vcs.modified", Value: modified},
				},
			}, true
		}
	}
	none := func() (*debug.BuildInfo, bool) { return nil, false }
	tagged := func() (*debug.BuildInfo, bool) {
		return &debug.BuildInfo{GoVersion: "go1.99.2", Main: debug.Module{Version: "v1.2.3"}}, true
	}
	for _, tc := range []struct {
		name         string
		v, c         string
		read         func() (*debug.BuildInfo, bool)
		wantV, wantC string
		wantGo       string
	}{
		{"stamped wins over vcs", "v0.3.0", "abc", vcs("def", "true"), "v0.3.0", "abc", "go1.99.1"},
		{"vcs when not stamped", "", "", vcs("def", "false"), "dev", "def", "go1.99.1"},
		{"dirty checkout", "", "", vcs("def", "true"), "dev", "def-dirty", "go1.99.1"},
		{"go install module@version", "", "", tagged, "v1.2.3", "unknown", "go1.99.2"},
		{"nothing known", "", "", none, "dev", "unknown", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := get(tc.v, tc.c, tc.read)
			if got.Version != tc.wantV || got.Commit != tc.wantC {
				t.Fatalf("got %+v, want version %q commit %q", got, tc.wantV, tc.wantC)
			}
			if tc.wantGo != "" && got.GoVersion != tc.wantGo {
				t.Fatalf("go version %q, want %q", got.GoVersion, tc.wantGo)
			}
			if got.GoVersion == "" {
				t.Fatal("empty go version")
			}
		})
	}
}

func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector())
	info := Get()
	want := `# HELP confgate_build_info Which build this process is: always 1, labelled with version, commit and go_version.
# TYPE confgate_build_info gauge
confgate_build_info{commit="` + info.Commit + `",go_version="` + info.GoVersion + `",version="` + info.Version + `"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "confgate_build_info"); err != nil {
		t.Fatal(err)
	}
}
