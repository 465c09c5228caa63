package main

import (
	"encoding/json"
	"fmt"

	"github.com/confgate/confgate/internal/buildinfo"
	"github.com/spf13/cobra"
)

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go version of this binary",
		Long: `Print which confgate this is: the release version (dev when none was
stamped in at build time), the source commit and the Go version. Running
gateways export the same as the confgate_build_info metric. With -o json,
one object: {"version", "commit", "go_version"}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := buildinfo.Get()
			out := cmd.OutOrStdout()
			if g.json() {
				return json.NewEncoder(out).Encode(info)
			}
			_, err := fmt.Fprintf(out, "confgate %s\ncommit  %s\ngo      %s\n", info.Version, info.Commit, info.GoVersion)
			return err
		},
	}
}
