package client

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/keyspace"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// FleetProgress is how far the fleet is with a write: of the Total
// connected clients whose selector covers the key, Applied have reported a
// cursor that covers the write; Missing names the others (client IDs,
// sorted; at most 100).
type FleetProgress struct {
	Applied, Total int
	Missing        []string
}

// ErrFleetNotApplied: the share was not reached before the context ended.
var ErrFleetNotApplied = errors.New("the fleet did not apply the write in time")

// WaitFleet waits until at least share (0 < share ≤ 1) of the clients
// connected to the fleet whose selector covers key report an applied
// cursor that covers written (the cursor of a write's answer), asking
// gateway c's fleet view (GetFleet) every poll (default 250ms). With no
// such client it returns at once. When ctx ends first it returns the last
// progress and an error wrapping ErrFleetNotApplied that names the
// clients that had not.
func WaitFleet(ctx context.Context, c confgatev1.ConfigServiceClient, key string, written []byte, share float64, poll time.Duration) (FleetProgress, error) {
	if share <= 0 || share > 1 {
		return FleetProgress{}, fmt.Errorf("wait fleet: share %v: want more than 0 and at most 1", share)
	}
	want, err := cursor.Decode(written)
	if err != nil {
		return FleetProgress{}, fmt.Errorf("wait fleet: the write's cursor: %w", err)
	}
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	var last FleetProgress
	for {
		resp, err := c.GetFleet(ctx, &confgatev1.GetFleetRequest{Prefix: key})
		if err == nil {
			last = fleetProgress(resp, key, want)
			if last.Total == 0 || float64(last.Applied) >= share*float64(last.Total) {
				return last, nil
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return last, fmt.Errorf("%w: %w", ErrFleetNotApplied, err)
			}
			return last, fmt.Errorf("%w: %d of %d clients applied it (%.0f%% wanted); not: %s", ErrFleetNotApplied, last.Applied, last.Total, share*100, strings.Join(last.Missing, ", "))
		case <-time.After(poll):
		}
	}
}

func fleetProgress(resp *confgatev1.GetFleetResponse, key string, want cursor.Cursor) FleetProgress {
	var p FleetProgress
	for _, fc := range resp.GetClients() {
		if !selectsKey(fc.GetSelector().GetPrefixes(), key) {
			continue
		}
		p.Total++
		if c, err := cursor.Decode(fc.GetAppliedCursor()); err == nil && c.Covers(want) {
			p.Applied++
		} else if len(p.Missing) < 100 {
			p.Missing = append(p.Missing, fc.GetClient().GetClientId())
		}
	}
	sort.Strings(p.Missing)
	return p
}

// selectsKey reports whether a client's selector (as the fleet view lists
// it) selects key.
func selectsKey(prefixes []string, key string) bool {
	sel, err := keyspace.NewSelector(prefixes)
	return err == nil && sel.Match(key)
}
