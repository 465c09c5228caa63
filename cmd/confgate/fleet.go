package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"sort"
	"strings"
	"time"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"github.com/spf13/cobra"
)

// fleetClientOut is one client in fleet's JSON output.
type fleetClientOut struct {
	ClientID       string            `json:"client_id"`
	Service        string            `json:"service"`
	Labels         map[string]string `json:"labels,omitempty"`
	Prefixes       []string          `json:"prefixes"`
	Gateway        string            `json:"gateway"`
	State          string            `json:"state"`
	AppliedCursor  string            `json:"applied_cursor,omitempty"`
	Digest         string            `json:"digest,omitempty"`
	LagRecords     int64             `json:"lag_records"`
	ConnectedSince string            `json:"connected_since,omitempty"`
	LastReport     string            `json:"last_report,omitempty"`
	Rejections     []rejectionOut    `json:"rejections,omitempty"`
}

type rejectionOut struct {
	Key     string `json:"key"`
	Version string `json:"version"`
	Reason  string `json:"reason"`
}

type serviceOut struct {
	Service      string `json:"service"`
	InSync       uint32 `json:"in_sync"`
	Behind       uint32 `json:"behind"`
	Diverged     uint32 `json:"diverged"`
	NotReporting uint32 `json:"not_reporting"`
	Unknown      uint32 `json:"unknown"`
}

type fleetOut struct {
	Cursor   string           `json:"cursor"`
	Clients  []fleetClientOut `json:"clients"`
	Services []serviceOut     `json:"services"`
}

func stateName(s confgatev1.FleetState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "FLEET_STATE_"))
}

func unixMs(ms int64) string {
	if ms == 0 {
		return ""
	}
	return time.UnixMilli(ms).UTC().Format(time.RFC3339)
}

func newFleetCmd(g *globals) *cobra.Command {
	var service, behind string
	cmd := &cobra.Command{
		Use:   "fleet [PREFIX]",
		Short: "Which clients run which config: every client of the fleet and its state",
		Long: `List the clients subscribed to any gateway (every gateway knows the whole
fleet from the fleet topic), with their state against the config:

  in_sync        its view is the gateway's at its cursor, and nothing it
                 selects changed since
  behind         its view matches its cursor, but changes it selects came since
  diverged       its view differs from the config at its cursor
  not_reporting  connected, but no report (an old client) or its reports stopped
  unknown        its cursor is older than the gateway's change history

PREFIX keeps the clients whose selector covers keys under it; --service one
service; --behind CURSOR the clients that have not applied CURSOR (as put
prints it). Text output: one line per client, then one per service with
the counts. JSON output: one object {cursor, clients, services}.`,
		Args: maxArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &confgatev1.GetFleetRequest{Service: service}
			if len(args) == 1 {
				req.Prefix = args[0]
			}
			var err error
			if req.BehindCursor, err = parseCursorFlag(cmd, "behind", behind); err != nil {
				return err
			}
			ctx, cancel := g.callContext(cmd.Context())
			defer cancel()
			var resp *confgatev1.GetFleetResponse
			err = g.callFirst(ctx, true, func(ctx context.Context, c confgatev1.ConfigServiceClient) error {
				var err error
				resp, err = c.GetFleet(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			return printFleet(newPrinter(g.env.Stdout), g.json(), resp)
		},
	}
	cmd.Flags().StringVar(&service, "service", "", "only the clients of this service")
	cmd.Flags().StringVar(&behind, "behind", "", "only the clients whose applied cursor does not cover this one")
	return cmd
}

func printFleet(p *printer, asJSON bool, resp *confgatev1.GetFleetResponse) error {
	out := fleetOut{Cursor: cursorText(resp.GetCursor()), Clients: []fleetClientOut{}, Services: []serviceOut{}}
	for _, c := range resp.GetClients() {
		fc := fleetClientOut{
			ClientID: c.GetClient().GetClientId(), Service: c.GetClient().GetService(), Labels: c.GetClient().GetLabels(),
			Prefixes: c.GetSelector().GetPrefixes(), Gateway: c.GetGateway(), State: stateName(c.GetState()),
			AppliedCursor: cursorText(c.GetAppliedCursor()), LagRecords: c.GetLagRecords(),
			ConnectedSince: unixMs(c.GetConnectedSinceUnixMs()), LastReport: unixMs(c.GetLastReportUnixMs()),
		}
		if len(c.GetDigest()) > 0 {
			fc.Digest = base64.RawURLEncoding.EncodeToString(c.GetDigest())
		}
		if fc.Prefixes == nil {
			fc.Prefixes = []string{}
		}
		for _, r := range c.GetRejections() {
			fc.Rejections = append(fc.Rejections, rejectionOut{Key: r.GetKey(), Version: fmt.Sprintf("%d:%d", r.GetVersion().GetPartition(), r.GetVersion().GetOffset()), Reason: r.GetReason()})
		}
		out.Clients = append(out.Clients, fc)
	}
	sort.Slice(out.Clients, func(a, b int) bool {
		ca, cb := out.Clients[a], out.Clients[b]
		if ca.Service != cb.Service {
			return ca.Service < cb.Service
		}
		return ca.ClientID < cb.ClientID
	})
	for _, s := range resp.GetServices() {
		out.Services = append(out.Services, serviceOut{s.GetService(), s.GetInSync(), s.GetBehind(), s.GetDiverged(), s.GetNotReporting(), s.GetUnknown()})
	}
	if asJSON {
		return p.JSON(out)
	}
	for _, c := range out.Clients {
		labels := make([]string, 0, len(c.Labels))
		for k, v := range c.Labels {
			labels = append(labels, oneLine(k)+"="+oneLine(v))
		}
		sort.Strings(labels)
		line := fmt.Sprintf("%s %s %s gateway=%s lag=%d last_report=%s prefixes=%s", oneLine(c.Service), oneLine(c.ClientID), c.State, oneLine(c.Gateway), c.LagRecords, c.LastReport, oneLine(strings.Join(c.Prefixes, ",")))
		if len(labels) > 0 {
			line += " " + strings.Join(labels, " ")
		}
		for _, r := range c.Rejections {
			line += fmt.Sprintf(" rejected=%s@%s(%s)", oneLine(r.Key), r.Version, oneLine(r.Reason))
		}
		if err := p.Linef("%s", line); err != nil {
			return err
		}
	}
	for _, s := range out.Services {
		if err := p.Linef("# service %s: %d in sync, %d behind, %d diverged, %d not reporting, %d unknown", oneLine(s.Service), s.InSync, s.Behind, s.Diverged, s.NotReporting, s.Unknown); err != nil {
			return err
		}
	}
	return p.Linef("# %d clients at cursor %s", len(out.Clients), out.Cursor)
}
