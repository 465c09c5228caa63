package client

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/digest"
	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// syncedReplica returns a replica that applied a snapshot of es at c.
func syncedReplica(t testing.TB, c cursor.Cursor, es ...*confgatev1.Entry) *replica {
	t.Helper()
	r := newReplica()
	s := &session{}
	for _, m := range snapshot(c, initial, es...) {
		if _, err := r.handle(s, m); err != nil {
			t.Fatal(err)
		}
	}
	return r
}

// checkDigest recomputes the digest from the tree and compares it with the
// incrementally maintained one.
func checkDigest(t *testing.T, r *replica) {
	t.Helper()
	var d digest.Digest
	r.tree.Ascend(func(e *Entry) bool {
		d.Add(digest.Hash(e.Key, e.Value, e.Partition, e.Offset))
		return true
	})
	if !bytes.Equal(d.Bytes(), r.sum.Bytes()) {
		t.Fatalf("incremental digest %x, recomputed %x", r.sum.Bytes(), d.Bytes())
	}
}

func TestDeltaVersions(t *testing.T) {
	// The view holds k at partition 0, offset 5.
	tests := []struct {
		name   string
		change *confgatev1.Change
		want   string // k's value afterwards, "" when absent
		event  EventKind
	}{
		{"older offset ignored", put(ent("k", "old", 0, 4)), "v", 0},
		{"same version ignored", put(ent("k", "dup", 0, 5)), "v", 0},
		{"newer offset applied", put(ent("k", "new", 0, 6)), "new", EventPut},
		{"other partition accepted", put(ent("k", "moved", 1, 1)), "moved", EventPut},
		{"older delete ignored", del("k", 0, 3), "v", 0},
		{"same-version delete ignored", del("k", 0, 5), "v", 0},
		{"newer delete applied", del("k", 0, 7), "", EventDelete},
		{"delete of an absent key is a no-op", del("absent", 0, 8), "v", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := syncedReplica(t, cur(6, 1), ent("k", "v", 0, 5), ent("other", "o", 1, 0))
			res, err := r.handle(&session{}, delta(cur(9, 2), tt.change))
			if err != nil {
				t.Fatal(err)
			}
			e, ok := r.tree.Get(&Entry{Key: "k"})
			switch {
			case tt.want == "" && ok:
				t.Errorf("k = %q, want deleted", e.Value)
			case tt.want != "" && (!ok || string(e.Value) != tt.want):
				t.Errorf("k = %v, want %q", e, tt.want)
			}
			var kinds []EventKind
			for _, ev := range res.events {
				kinds = append(kinds, ev.Kind)
			}
			if tt.event == 0 && len(kinds) != 0 || tt.event != 0 && !slices.Equal(kinds, []EventKind{tt.event}) {
				t.Errorf("events %v, want %v", kinds, tt.event)
			}
			if !r.cur.Equal(cur(9, 2)) {
				t.Errorf("cursor %v, want the delta's even when changes were skipped", r.cur)
			}
			checkDigest(t, r)
		})
	}
}

func TestDeltaIsAtomic(t *testing.T) {
	r := syncedReplica(t, cur(6), ent("k", "v", 0, 5))
	// The second change is malformed: nothing of the delta may apply.
	bad := delta(cur(9), put(ent("k", "new", 0, 6)), &confgatev1.Change{})
	if _, err := r.handle(&session{}, bad); err == nil {
		t.Fatal("malformed delta accepted")
	}
	if e, _ := r.tree.Get(&Entry{Key: "k"}); string(e.Value) != "v" || !r.cur.Equal(cur(6)) {
		t.Errorf("partially applied: k=%q cursor=%v", e.Value, r.cur)
	}
}

func TestMessageOrder(t *testing.T) {
	tests := []struct {
		name    string
		synced  bool
		msgs    []*confgatev1.SubscribeResponse
		wantErr string
	}{
		{"delta before any snapshot", false, []*confgatev1.SubscribeResponse{delta(cur(1))}, "before any snapshot"},
		{"delta inside a snapshot", true, []*confgatev1.SubscribeResponse{chunk(ent("a", "1", 0, 0)), delta(cur(7))}, "middle of a snapshot"},
		{"entry without version", false, []*confgatev1.SubscribeResponse{chunk(&confgatev1.Entry{Key: "a"})}, "no version"},
		{"progress of another topic", true, []*confgatev1.SubscribeResponse{progress(cursor.Cursor{}, 0, false)}, "of topic"},
		{"malformed cursor", true, []*confgatev1.SubscribeResponse{{Message: &confgatev1.SubscribeResponse_Delta{Delta: &confgatev1.Delta{Cursor: []byte{7}}}}}, "unknown format"},
		{"snapshot entry past its cursor", false, []*confgatev1.SubscribeResponse{chunk(ent("a", "1", 0, 3)), end(cur(3), initial, ent("a", "1", 0, 3))}, "at or past its cursor"},
		{"progress before any snapshot is ignored", false, []*confgatev1.SubscribeResponse{progress(cur(1), 3, false)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReplica()
			if tt.synced {
				r = syncedReplica(t, cur(6))
			}
			var err error
			s := &session{}
			for _, m := range tt.msgs {
				if _, err = r.handle(s, m); err != nil {
					break
				}
			}
			var pe *protocolError
			switch {
			case tt.wantErr == "" && err != nil && !errors.As(err, &pe):
				t.Fatalf("error %v is not a protocol error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want it to mention %q", err, tt.wantErr)
			}
		})
	}
}

func TestSnapshotMayReplace(t *testing.T) {
	at := func(topic cursor.TopicID, offs ...int64) cursor.Cursor {
		return cursor.Cursor{Topic: topic, Offsets: offs}
	}
	tests := []struct {
		name    string
		next    cursor.Cursor
		reason  confgatev1.SnapshotReason
		reset   bool
		resumed bool
		want    bool
	}{
		{"ahead", at(topicA, 6, 5), initial, false, false, true},
		{"equal", at(topicA, 5, 5), expired, true, true, true},
		{"behind", at(topicA, 4, 5), initial, false, false, false},
		{"behind, history expired", at(topicA, 4, 5), expired, true, true, false},
		{"behind, slow subscriber", at(topicA, 4, 5), slow, true, true, false},
		{"behind, state rebuilt", at(topicA, 4, 5), rebuilt, true, true, true},
		{"behind, topic changed", at(topicA, 4, 5), changed, true, true, true},
		{"state rebuilt without reset flag", at(topicA, 4, 5), rebuilt, false, true, false},
		{"other topic, reset", at(topicB, 1), expired, true, true, true},
		{"other topic, resumed, no reset", at(topicB, 1), initial, false, true, false},
		{"other topic, fresh subscribe", at(topicB, 1), initial, false, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			end := &confgatev1.SnapshotEnd{Reason: tt.reason, Reset_: tt.reset}
			if got := snapshotMayReplace(at(topicA, 5, 5), tt.next, end, tt.resumed); got != tt.want {
				t.Fatalf("snapshotMayReplace = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	v := &View{s: settings{backoffMin: 10 * time.Millisecond, backoffMax: time.Second}}
	tests := []struct {
		attempt int
		bound   time.Duration
	}{
		{0, 10 * time.Millisecond},
		{1, 20 * time.Millisecond},
		{3, 80 * time.Millisecond},
		{7, time.Second},
		{1000, time.Second},
	}
	for _, tt := range tests {
		for range 200 {
			if d := v.backoff(tt.attempt); d < 0 || d > tt.bound {
				t.Fatalf("backoff(%d) = %v, want within [0, %v]", tt.attempt, d, tt.bound)
			}
		}
	}
	// Full jitter: draws spread over the range instead of sitting at the bound.
	var low bool
	for range 200 {
		if v.backoff(1000) < 500*time.Millisecond {
			low = true
			break
		}
	}
	if !low {
		t.Error("backoff is not jittered")
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no addresses", Config{}, "Addrs is empty"},
		{"empty address", Config{Addrs: []string{"127.0.0.1:1", ""}}, "Addrs[1] is empty"},
		{"bad prefix", Config{Addrs: []string{"127.0.0.1:1"}, Prefixes: []string{"/payments"}}, "starts with '/'"},
		{"prefix with empty segment", Config{Addrs: []string{"127.0.0.1:1"}, Prefixes: []string{"a//"}}, "empty path segment"},
		{"negative backoff", Config{Addrs: []string{"127.0.0.1:1"}, BackoffMin: -1}, "negative"},
		{"min above max", Config{Addrs: []string{"127.0.0.1:1"}, BackoffMin: time.Second, BackoffMax: time.Millisecond}, "greater than"},
		{"dial options without credentials", Config{Addrs: []string{"127.0.0.1:1"}, DialOptions: []grpc.DialOption{grpc.WithUserAgent("x")}}, "credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := Subscribe(t.Context(), tt.cfg)
			if err == nil {
				_ = v.Close()
				t.Fatal("invalid config accepted")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to mention %q", err, tt.want)
			}
		})
	}
	s, err := Config{Addrs: []string{"127.0.0.1:1"}, BackoffMin: 20 * time.Second}.settings()
	if err != nil || s.backoffMax != 20*time.Second {
		t.Errorf("BackoffMin above the default max: max = %v, err = %v; want max raised to min", s.backoffMax, err)
	}
}
