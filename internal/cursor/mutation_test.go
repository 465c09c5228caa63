package cursor

// Tests that pin down what the mutation run (scripts/mutation.sh) found
// unpinned: the exact limits of Decode, Equal in both directions, Sum.

import (
	"encoding/binary"
	"strings"
	"testing"
)

// encodeRaw builds a v1 cursor by hand, so a test can name a partition count
// or an offset that Encode would never write.
func encodeRaw(count uint64, offsets ...uint64) []byte {
	b := append([]byte{formatV1}, make([]byte, 16)...)
	b = binary.AppendUvarint(b, count)
	for _, o := range offsets {
		b = binary.AppendUvarint(b, o)
	}
	return b
}

func TestDecodeLimits(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantErr string // "" means accepted
		wantN   int
	}{
		{"offset at the limit", encodeRaw(1, 1<<62), "", 1},
		{"offset past the limit", encodeRaw(1, 1<<62+1), "out of range", 0},
		{"partitions at the limit", encodeRaw(maxPartitions, make([]uint64, maxPartitions)...), "", maxPartitions},
		{"partitions past the limit", encodeRaw(maxPartitions+1, make([]uint64, maxPartitions+1)...), "more than the limit", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Decode(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Decode error = %v, want it to mention %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if len(c.Offsets) != tt.wantN {
				t.Fatalf("decoded %d partitions, want %d", len(c.Offsets), tt.wantN)
			}
		})
	}
	c, err := Decode(encodeRaw(1, 1<<62))
	if err != nil || c.Offsets[0] != 1<<62 {
		t.Fatalf("Decode(offset 1<<62) = %+v, %v", c, err)
	}
}

func TestEqualBothWays(t *testing.T) {
	tests := []struct {
		name string
		a, b Cursor
		want bool
	}{
		{"same", Cursor{Offsets: []int64{1, 2}}, Cursor{Offsets: []int64{1, 2}}, true},
		{"missing partition is offset 0", Cursor{Offsets: []int64{1, 0}}, Cursor{Offsets: []int64{1}}, true},
		{"a ahead", Cursor{Offsets: []int64{2, 2}}, Cursor{Offsets: []int64{1, 2}}, false},
		{"b ahead", Cursor{Offsets: []int64{1, 2}}, Cursor{Offsets: []int64{1, 3}}, false},
		{"a has more partitions", Cursor{Offsets: []int64{1, 2, 1}}, Cursor{Offsets: []int64{1, 2}}, false},
		{"other topic", Cursor{Topic: TopicID{1}}, Cursor{Topic: TopicID{2}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.a.Equal(tt.b); got != tt.want {
				t.Fatalf("a.Equal(b) = %v, want %v", got, tt.want)
			}
			if got := tt.b.Equal(tt.a); got != tt.want {
				t.Fatalf("b.Equal(a) = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSum(t *testing.T) {
	tests := []struct {
		offsets []int64
		want    int64
	}{
		{nil, 0},
		{[]int64{7}, 7},
		{[]int64{3, 0, 40}, 43},
	}
	for _, tt := range tests {
		if got := (Cursor{Offsets: tt.offsets}).Sum(); got != tt.want {
			t.Errorf("Sum(%v) = %d, want %d", tt.offsets, got, tt.want)
		}
	}
}

// TestParseRefusesLineBreaksAnywhere: a line break is refused at the first
// byte too, not only inside the text.
func TestParseRefusesLineBreaksAnywhere(t *testing.T) {
	good := Cursor{Topic: TopicID{5}, Offsets: []int64{1, 2}}.String()
	for _, s := range []string{"\n" + good, "\r" + good, good[:3] + "\n" + good[3:], good + "\r\n"} {
		if _, err := Parse(s); err == nil || !strings.Contains(err.Error(), "line break") {
			t.Errorf("Parse(%q) error = %v, want a line break refused", s, err)
		}
	}
	if _, err := Parse(good); err != nil {
		t.Fatalf("Parse(good) = %v", err)
	}
}
