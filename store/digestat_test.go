package store_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/cursor"
	"github.com/confgate/confgate/internal/digest"
	"github.com/confgate/confgate/internal/keyspace"
	"github.com/confgate/confgate/store"
)

// DigestsAt answers, for any cursor the history reaches, exactly the
// digest a snapshot of the selector had there, and whether a selected
// change came after it.
func TestDigestsAtMatchesPastSnapshots(t *testing.T) {
	c := newCluster(t)
	r := startStore(t, c, func(cfg *store.Config) { cfg.CreateTopic = true })
	r.waitReady(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sel, err := keyspace.NewSelector([]string{"app/"})
	if err != nil {
		t.Fatal(err)
	}
	// The whole keyspace takes the kept digest instead of a scan.
	all, _ := keyspace.NewSelector(nil)
	sels := []keyspace.Selector{sel, all}
	type seen struct {
		at  cursor.Cursor
		dig [][]byte // per selector
	}
	var past []seen
	look := func() {
		snap, err := r.Snapshot()
		if err != nil {
			t.Fatal(err)
		}
		p := seen{at: snap.Cursor}
		for _, s := range sels {
			var d digest.Digest
			snap.Scan(s, func(e *store.Entry) bool { d.Add(e.DigestHash()); return true })
			p.dig = append(p.dig, d.Bytes())
		}
		if st := r.Status(); st.Cursor.Equal(snap.Cursor) && !bytes.Equal(st.Digest, p.dig[1]) {
			t.Fatalf("status digest %x, a scan of everything %x", st.Digest, p.dig[1])
		}
		past = append(past, p)
	}
	write := func(w store.Write) {
		_, _, cur, err := r.Produce(ctx, w)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.WaitApplied(ctx, cur); err != nil {
			t.Fatal(err)
		}
	}
	look()
	for _, w := range []store.Write{
		{Key: "app/a", Value: []byte("1")},
		{Key: "other/x", Value: []byte("1")},
		{Key: "app/b", Value: []byte("1")},
		{Key: "app/a", Value: []byte("2")},
		{Key: "app/b", Delete: true},
		{Key: "app/c", Value: []byte("1")},
		{Key: "other/x", Value: []byte("2")},
		{Key: "app/a", Delete: true},
		{Key: "app/a", Value: []byte("3")},
	} {
		write(w)
		look()
	}
	cursors := make([]cursor.Cursor, len(past))
	for i, p := range past {
		cursors[i] = p.at
	}
	for si, s := range sels {
		got, ok := r.DigestsAt(s, cursors)
		for i, p := range past {
			if !ok[i] {
				t.Fatalf("selector %d: cursor %d not answerable", si, i)
			}
			if !bytes.Equal(got[i].Digest, p.dig[si]) {
				t.Fatalf("selector %d: cursor %d: digest %x, the snapshot there had %x", si, i, got[i].Digest, p.dig[si])
			}
			// The last write is selected: only the last cursor has
			// nothing selected after it.
			wantChanged := i < len(past)-1
			if got[i].ChangedSince != wantChanged {
				t.Errorf("selector %d: cursor %d: changed since %v, want %v", si, i, got[i].ChangedSince, wantChanged)
			}
		}
	}
	// Another topic, and a cursor not applied yet, are not answerable.
	far := past[len(past)-1].at.Clone()
	far.Offsets[0] += 1000
	other := cursor.Cursor{Topic: cursor.TopicID{1}, Offsets: far.Offsets}
	if _, ok := r.DigestsAt(sel, []cursor.Cursor{far, other}); ok[0] || ok[1] {
		t.Fatalf("answered the unanswerable: %v", ok)
	}
}
