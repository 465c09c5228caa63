package gateway

import (
	"fmt"
	"strings"
	"testing"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
	"google.golang.org/protobuf/proto"
)

func TestMergeDeltas(t *testing.T) {
	put := func(key, value string) []byte {
		b, err := proto.Marshal(&confgatev1.Entry{Key: key, Value: []byte(value)})
		if err != nil {
			t.Fatal(err)
		}
		return changeField(b, false)
	}
	delta := func(cursor string, keys ...string) *frame {
		var body []byte
		for _, k := range keys {
			body = append(body, put(k, strings.Repeat("v", 10))...)
		}
		return deltaFrame(body, []byte(cursor), false)
	}
	coalesced := deltaFrame(put("c", "v"), []byte("cc"), true)
	progress := progressFrame(&confgatev1.Progress{Cursor: []byte("pp")})
	big := delta("bb", strings.Repeat("k", 200))
	for _, tc := range []struct {
		name   string
		frames []*frame
		want   []string
	}{
		{"one", []*frame{delta("c1", "a")}, []string{"delta [a] @c1"}},
		{"run merges", []*frame{delta("c1", "a"), delta("c2", "b", "c"), delta("c3", "d")}, []string{"delta [a b c d] @c3"}},
		{"coalesced breaks the run", []*frame{delta("c1", "a"), coalesced, delta("c3", "d"), delta("c4", "e")}, []string{"delta [a] @c1", "coalesced [c] @cc", "delta [d e] @c4"}},
		{"progress breaks the run", []*frame{delta("c1", "a"), progress, delta("c3", "d")}, []string{"delta [a] @c1", "progress @pp", "delta [d] @c3"}},
		{"over the limit", []*frame{delta("c1", "a"), big, delta("c3", "d"), delta("c4", "e")}, []string{"delta [a] @c1", "delta [" + strings.Repeat("k", 200) + "] @bb", "delta [d e] @c4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			err := mergeDeltas(tc.frames, 150, func(f *frame) error {
				var m confgatev1.SubscribeResponse
				if err := proto.Unmarshal(f.b, &m); err != nil {
					return err
				}
				if p := m.GetProgress(); p != nil {
					got = append(got, "progress @"+string(p.Cursor))
					return nil
				}
				d := m.GetDelta()
				var keys []string
				for _, c := range d.Changes {
					keys = append(keys, c.GetPut().GetKey())
				}
				kind := "delta"
				if d.Coalesced {
					kind = "coalesced"
				}
				got = append(got, fmt.Sprintf("%s %v @%s", kind, keys, d.Cursor))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("sent %q, want %q", got, tc.want)
			}
		})
	}
}
