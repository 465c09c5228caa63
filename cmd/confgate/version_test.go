package main

import (
	"encoding/json"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/confgate/confgate/internal/buildinfo"
)

func TestVersionCommand(t *testing.T) {
	c := cli{t: t}
	info := buildinfo.Get()
	text := c.ok("version")
	for _, want := range []string{"confgate " + info.Version + "\n", "commit  " + info.Commit + "\n", "go      " + runtime.Version() + "\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("version output %q lacks %q", text, want)
		}
	}
	var got buildinfo.Info
	if err := json.Unmarshal([]byte(c.ok("version", "-o", "json")), &got); err != nil {
		t.Fatal(err)
	}
	if got != info {
		t.Fatalf("version -o json = %+v, want %+v", got, info)
	}
}

// A running node exports the build it is as confgate_build_info.
func TestBuildInfoMetric(t *testing.T) {
	n, _ := startDev(t)
	resp, err := http.Get("http://" + n.Admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	info := buildinfo.Get()
	want := `confgate_build_info{commit="` + info.Commit + `",go_version="` + info.GoVersion + `",version="` + info.Version + `"} 1`
	if !strings.Contains(string(body), want) {
		t.Fatalf("/metrics lacks %s", want)
	}
}
