package digest

import (
	"bytes"
	"testing"
)

func TestOrderIndependentAndRemovable(t *testing.T) {
	a := Hash("a", []byte("1"), 0, 10)
	b := Hash("b", []byte("2"), 1, 3)
	c := Hash("c", nil, 0, 11)

	var d1, d2 Digest
	d1.Add(a)
	d1.Add(b)
	d1.Add(c)
	d2.Add(c)
	d2.Add(a)
	d2.Add(b)
	if !bytes.Equal(d1.Bytes(), d2.Bytes()) {
		t.Fatal("digest depends on order")
	}
	d1.Remove(c)
	var d3 Digest
	d3.Add(b)
	d3.Add(a)
	if !bytes.Equal(d1.Bytes(), d3.Bytes()) {
		t.Fatal("Remove did not undo Add")
	}
	if bytes.Equal(d3.Bytes(), (Digest{}).Bytes()) {
		t.Fatal("non-empty set has the empty digest")
	}
}

func TestHashDistinguishes(t *testing.T) {
	base := Hash("ab", []byte("c"), 0, 1)
	for name, h := range map[string]any{
		"key/value boundary": Hash("a", []byte("bc"), 0, 1),
		"partition":          Hash("ab", []byte("c"), 1, 1),
		"offset":             Hash("ab", []byte("c"), 0, 2),
		"value":              Hash("ab", []byte("d"), 0, 1),
	} {
		t.Run(name, func(t *testing.T) {
			if h == base {
				t.Fatal("hash collision on distinct entries")
			}
		})
	}
}
