package buildinfo

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set at link time, for example
//
//	go build -ldflags "-X github.com/confgate/confgate/internal/buildinfo.version=v0.3.0
//	  -X github.com/confgate/confgate/internal/buildinfo.commit=$(git rev-parse HEAD)"
//
// They are variables only because -X can set nothing else; nothing
// writes them at run time.
var (
	version string
	commit  string
)

// Info describes one build.
type Info struct {
	// Version is the release version, "dev" when none was stamped in.
	Version string `json:"version"`
	// Commit is the source commit; "unknown" when neither the linker nor
	// the Go toolchain recorded one. A "-dirty" suffix marks a build of a
	// checkout with uncommitted changes.
	Commit string `json:"commit"`
	// GoVersion is the toolchain that built the binary.
	GoVersion string `json:"go_version"`
}

// Get returns this binary's build information.
func Get() Info {
	return get(version, commit, debug.ReadBuildInfo)
}

func get(v, c string, read func() (*debug.BuildInfo, bool)) Info {
	info := Info{Version: v, Commit: c, GoVersion: runtime.Version()}
	if bi, ok := read(); ok {
		if bi.GoVersion != "" {
			info.GoVersion = bi.GoVersion
		}
		var rev string
		var dirty bool
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				dirty = s.Value == "true"
			}
		}
		if info.Commit == "" && rev != "" {
			info.Commit = rev
			if dirty {
				info.Commit += "-dirty"
			}
		}
		// A module built with `go install module@vX.Y.Z` knows its version.
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// Collector is the confgate_build_info gauge: always 1, labelled with the
// version, commit and Go version, so dashboards can show which build each
// gateway runs and alerts can join on it.
func Collector() prometheus.Collector {
	info := Get()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "confgate_build_info",
		Help: "Which build this process is: always 1, labelled with version, commit and go_version.",
		ConstLabels: prometheus.Labels{
			"version":    info.Version,
			"commit":     info.Commit,
			"go_version": info.GoVersion,
		},
	})
	g.Set(1)
	return g
}
