package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// serveEvents streams a "tick" every second (the overview's figures) and
// a "changed" when the store applies a batch (at most every
// consoleChangedGap), until the browser leaves or the gateway drains. At
// most consoleMaxEvents streams are open at once.
func (c *console) serveEvents(w http.ResponseWriter, r *http.Request) {
	if c.events.Add(1) > consoleMaxEvents {
		c.events.Add(-1)
		w.Header().Set("Retry-After", "10")
		http.Error(w, fmt.Sprintf("more than %d console event streams are open on this gateway", consoleMaxEvents), http.StatusServiceUnavailable)
		return
	}
	defer c.events.Add(-1)
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(event string, v any) bool {
		b, _ := json.Marshal(v)
		_ = rc.SetWriteDeadline(time.Now().Add(consoleWriteDeadline))
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	// The channel is taken before the cursor is read, so a batch applied
	// after the read closes it.
	changed := c.g.src.Changed()
	if !send("tick", c.figures()) {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var last time.Time
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.g.draining:
			return
		case <-tick.C:
			if !send("tick", c.figures()) {
				return
			}
		case <-changed:
			if wait := consoleChangedGap - time.Since(last); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-r.Context().Done():
					t.Stop()
					return
				case <-c.g.draining:
					t.Stop()
					return
				case <-t.C:
				}
			}
			changed = c.g.src.Changed()
			last = time.Now()
			if !send("changed", map[string]string{"cursor": c.g.src.Status().Cursor.String()}) {
				return
			}
		}
	}
}
