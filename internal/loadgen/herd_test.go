package loadgen

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/testkit"
)

func TestRunHerd(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	const size = 1024
	keyLen := len("bench/herd/k000000")
	for _, tc := range []struct {
		name    string
		fill    bool
		clients int
		server  Server
	}{
		// 200 KiB: 200 keys of 1 KiB.
		{"fill then herd", true, 20, Server{PIDs: []int{os.Getpid()}}},
		{"herd on what is there", false, 7, Server{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, err := RunHerd(ctx, HerdConfig{
				Addr: g.Addr, Fill: tc.fill, Bytes: 200 << 10, Size: size, Clients: tc.clients, Server: tc.server,
			})
			if err != nil {
				t.Fatal(err)
			}
			s := res.Summary()
			t.Logf("%+v", s)
			wantFill := 0
			if tc.fill {
				wantFill = 200
			}
			entryBytes := int64(200 * (keyLen + size))
			if res.FillWrites != wantFill || res.Entries != 200 || res.EntryBytes != entryBytes {
				t.Errorf("fill %d, entries %d of %d bytes; want %d, 200 of %d", res.FillWrites, res.Entries, res.EntryBytes, wantFill, entryBytes)
			}
			if res.Done != tc.clients || res.Complete != tc.clients || res.Errors != 0 || res.Completion.TotalCount() != int64(tc.clients) {
				t.Errorf("done %d, complete %d, errors %d (%s), %d timed; want %d", res.Done, res.Complete, res.Errors, res.FirstError, res.Completion.TotalCount(), tc.clients)
			}
			if res.BytesReceived != int64(tc.clients)*entryBytes || res.WireBytes <= res.BytesReceived {
				t.Errorf("bytes received %d (wire %d), want %d", res.BytesReceived, res.WireBytes, int64(tc.clients)*entryBytes)
			}
			if res.AllDone <= 0 || s.MaxMS < s.P50MS {
				t.Errorf("times: %+v", s)
			}
			if res.ServerSampled != (len(tc.server.PIDs) > 0) || (res.ServerSampled && res.ServerRSSMax < 1<<20) {
				t.Errorf("server sampled %v, peak RSS %d", res.ServerSampled, res.ServerRSSMax)
			}
		})
	}
}

func TestRunHerdEmptyPrefix(t *testing.T) {
	k := testkit.StartKafka(t)
	g := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := RunHerd(ctx, HerdConfig{Addr: g.Addr, Clients: 2}); err == nil {
		t.Fatal("herd on an empty prefix: no error")
	}
}
