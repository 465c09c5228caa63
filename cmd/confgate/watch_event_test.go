package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/confgate/confgate/client"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// The stream reader, message by message: what each accepted message shows,
// in both formats.
func TestStreamReaderEvents(t *testing.T) {
	t.Parallel()
	half := snapshotOf(at(4), testEntry("lost", "x", 3))[0]
	snap := snapshotOf(at(6), testEntry("k", "v", 5))
	coalesced := deltaOf(at(8), putOf(testEntry("k", "w", 6)), deleteOf("k", 7))
	coalesced.GetDelta().Coalesced = true
	stale := progressOf(at(8))
	stale.GetProgress().Stale, stale.GetProgress().LagRecords = true, 3
	c6, c8 := cursorText(at(6).Encode()), cursorText(at(8).Encode())

	for _, tt := range []struct {
		name     string
		progress bool
		stream   []int // per message; 1 when nil
		msgs     []*confgatev1.SubscribeResponse
		text     string
		json     string
	}{
		{
			name: "snapshot then delta",
			msgs: append(snap, coalesced),
			text: "SNAPSHOT k = v  (p0@5)\n# snapshot: 1 entry (initial)\n# cursor " + c6 + "\n" +
				"PUT k = w  (p0@6)\nDELETE k  (p0@7)\n# cursor " + c8 + "\n",
			json: `{"op":"snapshot","key":"k","value":"v","content_type":"","version":{"partition":0,"offset":5},"cursor":"` + c6 + `"}` + "\n" +
				`{"op":"snapshot_end","cursor":"` + c6 + `","reason":"initial","reset":false,"entry_count":1,"digest":"` + digestText(snap[1].GetSnapshotEnd().GetDigest()) + `"}` + "\n" +
				`{"op":"put","key":"k","value":"w","content_type":"","version":{"partition":0,"offset":6},"cursor":"` + c8 + `","coalesced":true}` + "\n" +
				`{"op":"delete","key":"k","version":{"partition":0,"offset":7},"cursor":"` + c8 + `"}` + "\n",
		},
		{
			// The first stream dropped mid-snapshot: its chunk is not
			// part of the second stream's snapshot.
			name:   "chunks of a dropped stream",
			stream: []int{1, 2, 2},
			msgs:   append([]*confgatev1.SubscribeResponse{half}, snap...),
			text:   "SNAPSHOT k = v  (p0@5)\n# snapshot: 1 entry (initial)\n# cursor " + c6 + "\n",
		},
		{
			// A second snapshot replaces the first, flagged or not.
			name: "second snapshot",
			msgs: append(append([]*confgatev1.SubscribeResponse{}, snap...), snap...),
			text: "SNAPSHOT k = v  (p0@5)\n# snapshot: 1 entry (initial)\n# cursor " + c6 + "\n" +
				"SNAPSHOT k = v  (p0@5)\n# snapshot: 1 entry (initial, replaces everything shown before)\n# cursor " + c6 + "\n",
		},
		{
			name: "progress hidden",
			msgs: []*confgatev1.SubscribeResponse{stale},
		},
		{
			name:     "progress shown",
			progress: true,
			msgs:     []*confgatev1.SubscribeResponse{stale},
			text:     "# progress: lag 3 records, stale: the gateway has not heard from Kafka recently\n# cursor " + c8 + "\n",
			json:     `{"op":"progress","cursor":"` + c8 + `","lag_records":3,"stale":true}` + "\n",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, asJSON := range []bool{false, true} {
				want := tt.text
				if asJSON {
					want = tt.json
					if want == "" && tt.text != "" {
						continue
					}
				}
				var out bytes.Buffer
				r, p := streamReader{progress: tt.progress}, newEventPrinter(&out, asJSON)
				for i, m := range tt.msgs {
					o := client.Observation{Stream: 1, Message: m}
					if tt.stream != nil {
						o.Stream = tt.stream[i]
					}
					for _, e := range r.events(o) {
						if err := p.print(e); err != nil {
							t.Fatal(err)
						}
					}
				}
				if out.String() != want {
					t.Errorf("json=%v:\n%s\nwant:\n%s", asJSON, out.String(), want)
				}
			}
		})
	}
}

// Keys and values a gateway sends are printed safe for a terminal, in both
// formats.
func TestWatchPrintsSafely(t *testing.T) {
	t.Parallel()
	e := watchEvent{kind: evPut, cursor: at(1).Encode(), entry: testEntry("k\x1b[2J", "v\u202e", 0)}
	for _, asJSON := range []bool{false, true} {
		var out bytes.Buffer
		if err := newEventPrinter(&out, asJSON).print(e); err != nil {
			t.Fatal(err)
		}
		if strings.ContainsAny(out.String(), "\x1b\u202e") {
			t.Errorf("json=%v: raw control or bidi character in %q", asJSON, out.String())
		}
	}
}
