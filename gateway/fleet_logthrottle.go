package gateway

import (
	"sync"
	"time"
)

// divergedLogEvery bounds how often one diverged client or gateway is
// logged again: its digest changes with every write it applies, so "once
// per digest" alone would log it on every check under traffic.
const divergedLogEvery = time.Minute

// maxDivergedLogged bounds the IDs remembered; past it they are forgotten
// (and may be logged once more).
const maxDivergedLogged = 10_000

// divergedLog throttles the log of diverged fleet members: the first
// time one is seen diverged, then at most every divergedLogEvery while it
// stays so.
type divergedLog struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// due says whether id, seen diverged at now, is to be logged.
func (d *divergedLog) due(id string, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last == nil || len(d.last) >= maxDivergedLogged {
		d.last = map[string]time.Time{}
	}
	if t, ok := d.last[id]; ok && now.Sub(t) < divergedLogEvery {
		return false
	}
	d.last[id] = now
	return true
}

// ok says id is no longer diverged: the next divergence is logged at once.
func (d *divergedLog) ok(id string) {
	d.mu.Lock()
	delete(d.last, id)
	d.mu.Unlock()
}
