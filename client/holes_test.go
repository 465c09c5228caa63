package client

import (
	"strings"
	"testing"

	"github.com/confgate/confgate/internal/cursor"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// A delta or progress whose cursor is behind the view's on any partition
// (or of another topic) is refused directly, and nothing of it applies:
// the view's cursor and content stay; one at or ahead of the view is
// accepted.
func TestCursorBehindTheViewRefused(t *testing.T) {
	other := cursor.Cursor{Topic: cursor.TopicID{0xee}, Offsets: []int64{9, 9}}
	progressAt := func(c cursor.Cursor) *confgatev1.SubscribeResponse {
		return &confgatev1.SubscribeResponse{Message: &confgatev1.SubscribeResponse_Progress{Progress: &confgatev1.Progress{Cursor: c.Encode()}}}
	}
	tests := []struct {
		name    string
		msg     *confgatev1.SubscribeResponse
		wantErr string // "" when accepted
	}{
		{"progress behind on one partition", progressAt(cur(6, 1)), "behind the view's cursor"},
		{"progress behind on every partition", progressAt(cur(0, 0)), "behind the view's cursor"},
		{"progress with fewer partitions", progressAt(cur(6)), "behind the view's cursor"},
		{"progress of another topic", progressAt(other), "of topic"},
		{"delta behind", delta(cur(5, 2), put(ent("k", "new", 0, 9))), "behind the view's cursor"},
		{"delta of another topic", delta(other, put(ent("k", "new", 0, 9))), "of topic"},
		{"progress at the view", progressAt(cur(6, 2)), ""},
		{"progress ahead", progressAt(cur(7, 2)), ""},
		{"delta ahead", delta(cur(10, 2), put(ent("k", "new", 0, 9))), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := syncedReplica(t, cur(6, 2), ent("k", "v", 0, 5))
			_, err := r.handle(&session{}, tt.msg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want a refusal saying %q", err, tt.wantErr)
			}
			if e, _ := r.tree.Get(&Entry{Key: "k"}); string(e.Value) != "v" || !r.cur.Equal(cur(6, 2)) {
				t.Fatalf("refused message applied: k=%q cursor=%v", e.Value, r.cur)
			}
			checkDigest(t, r)
		})
	}
}
