package cursor

import (
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		c    Cursor
	}{
		{"no partitions", Cursor{Topic: TopicID{1}}},
		{"one", Cursor{Topic: TopicID{2}, Offsets: []int64{0}}},
		{"many", Cursor{Topic: TopicID{3, 4}, Offsets: []int64{0, 1, 127, 128, 1 << 40, 5}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode(tt.c.Encode())
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(tt.c) || got.Topic != tt.c.Topic || len(got.Offsets) != len(tt.c.Offsets) {
				t.Fatalf("got %+v, want %+v", got, tt.c)
			}
			p, err := Parse(tt.c.String())
			if err != nil || !p.Equal(tt.c) {
				t.Fatalf("Parse(String()) = %+v, %v", p, err)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	good := Cursor{Topic: TopicID{9}, Offsets: []int64{3, 4}}.Encode()
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"format", append([]byte{7}, good[1:]...), "unknown format"},
		{"short topic", good[:10], "topic ID incomplete"},
		{"no count", good[:17], "partition count missing"},
		{"missing offset", good[:len(good)-1], "offset of partition 1 missing"},
		{"trailing", append(append([]byte{}, good...), 0), "trailing"},
		{"huge count", append(append([]byte{}, good[:17]...), 0xff, 0xff, 0xff, 0x7f), "more than the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Decode error = %v, want it to mention %q", err, tt.want)
			}
		})
	}
	if _, err := Parse("!!"); err == nil {
		t.Fatal("Parse accepted non-base64")
	}
}

func TestCovers(t *testing.T) {
	a := TopicID{1}
	tests := []struct {
		name string
		c, o Cursor
		want bool
	}{
		{"equal", Cursor{a, []int64{1, 2}}, Cursor{a, []int64{1, 2}}, true},
		{"ahead", Cursor{a, []int64{2, 2}}, Cursor{a, []int64{1, 2}}, true},
		{"behind one", Cursor{a, []int64{2, 1}}, Cursor{a, []int64{1, 2}}, false},
		{"other topic", Cursor{TopicID{2}, []int64{5}}, Cursor{a, []int64{1}}, false},
		{"more partitions", Cursor{a, []int64{1, 2, 3}}, Cursor{a, []int64{1, 2}}, true},
		{"fewer partitions, zero tail", Cursor{a, []int64{1}}, Cursor{a, []int64{1, 0}}, true},
		{"fewer partitions, nonzero tail", Cursor{a, []int64{1}}, Cursor{a, []int64{1, 4}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.Covers(tt.o); got != tt.want {
				t.Fatalf("Covers = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Cursor{Topic: TopicID{1}, Offsets: []int64{1, 2, 3}}.Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Decode(c.Encode())
		if err != nil || !again.Equal(c) {
			t.Fatalf("re-encode mismatch: %v", err)
		}
	})
}

func TestMax(t *testing.T) {
	a, b := TopicID{1}, TopicID{2}
	tests := []struct {
		name       string
		x, y, want Cursor
	}{
		{"per partition", Cursor{a, []int64{5, 0, 2}}, Cursor{a, []int64{1, 3}}, Cursor{a, []int64{5, 3, 2}}},
		{"longer second", Cursor{a, []int64{1}}, Cursor{a, []int64{0, 4}}, Cursor{a, []int64{1, 4}}},
		{"zero first", Cursor{}, Cursor{a, []int64{1, 3}}, Cursor{a, []int64{1, 3}}},
		{"other topics: the second", Cursor{a, []int64{9, 9}}, Cursor{b, []int64{1}}, Cursor{b, []int64{1}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Max(tt.x, tt.y)
			if got.Topic != tt.want.Topic || !got.Equal(tt.want) || len(got.Offsets) != len(tt.want.Offsets) {
				t.Fatalf("Max = %v %v, want %v %v", got.Topic, got.Offsets, tt.want.Topic, tt.want.Offsets)
			}
			if len(tt.y.Offsets) > 0 {
				got.Offsets[0]++ // a copy: the inputs stay as they were
				if tt.y.Offsets[0] == got.Offsets[0] {
					t.Fatal("Max shares its result with an input")
				}
			}
		})
	}
}
