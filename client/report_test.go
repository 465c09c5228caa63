package client

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	confgatev1 "github.com/confgate/confgate/proto/confgate/v1"
)

// Every Subscribe carries the client's identity; a generated client ID is
// 16 random bytes in hex, the same on every stream of a View, and another
// View's differs.
func TestSubscribeSendsClientInfo(t *testing.T) {
	g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if call == 0 {
			// A clean end of stream: the view reconnects.
			return send(ss, snapshot(cur(1), initial, ent("a", "1", 0, 0))...)
		}
		return hold(ss)
	})
	labels := map[string]string{"zone": "eu-1", "version": "1.2.3"}
	v := startView(t, Config{Addrs: []string{g.addr}, Service: "payments", Labels: labels})
	waitSynced(t, v)
	labels["zone"] = "changed after Subscribe"

	r0, r1 := g.request(t, 0), g.request(t, 1)
	if len(r1.GetResumeCursor()) == 0 {
		t.Fatal("second request is no reconnect (no resume cursor)")
	}
	id := r0.GetClient().GetClientId()
	if b, err := hex.DecodeString(id); err != nil || len(b) != 16 {
		t.Errorf("generated client ID %q is not 16 bytes in hex", id)
	}
	for i, req := range []*confgatev1.SubscribeRequest{r0, r1} {
		c := req.GetClient()
		if c.GetClientId() != id || c.GetService() != "payments" ||
			!maps.Equal(c.GetLabels(), map[string]string{"zone": "eu-1", "version": "1.2.3"}) {
			t.Errorf("request %d client = %v, want ID %s, service payments and the labels given", i, c, id)
		}
	}

	other := startView(t, Config{Addrs: []string{g.addr}})
	r2 := g.request(t, 2)
	if got := r2.GetClient().GetClientId(); got == id || len(got) != 32 {
		t.Errorf("another View's generated client ID = %q, want a new one (the first is %q)", got, id)
	}
	_ = other.Close()

	named := startView(t, Config{Addrs: []string{g.addr}, ClientID: "payments-7f9c-pod-2"})
	if got := g.request(t, 3).GetClient(); got.GetClientId() != "payments-7f9c-pod-2" || got.GetService() != "" || len(got.GetLabels()) != 0 {
		t.Errorf("client = %v, want the configured ID only", got)
	}
	_ = named.Close()
}

// ClientID, Service and Labels out of bounds fail Subscribe, like any
// config error; the bounds themselves are accepted.
func TestConfigClientInfoBounds(t *testing.T) {
	many := map[string]string{}
	for i := range 17 {
		many[fmt.Sprint("l", i)] = "v"
	}
	long := strings.Repeat("x", 129)
	for _, tt := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"client ID too long", Config{ClientID: long}, "ClientID is 129 bytes"},
		{"client ID with a space", Config{ClientID: "my pod"}, "printable ASCII"},
		{"client ID with a control byte", Config{ClientID: "pod\n"}, "printable ASCII"},
		{"client ID not ASCII", Config{ClientID: "pöd"}, "printable ASCII"},
		{"service too long", Config{Service: long}, "Service is 129 bytes"},
		{"service not UTF-8", Config{Service: "\xff"}, "not valid UTF-8"},
		{"17 labels", Config{Labels: many}, "17 labels, more than 16"},
		{"label key too long", Config{Labels: map[string]string{long: "v"}}, "bytes, more than 128"},
		{"label value too long", Config{Labels: map[string]string{"k": long}}, "bytes, more than 128"},
		{"empty label key", Config{Labels: map[string]string{"": "v"}}, "empty key"},
		{"label not UTF-8", Config{Labels: map[string]string{"k": "\xc3"}}, "not valid UTF-8"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Addrs = []string{"127.0.0.1:1"}
			v, err := Subscribe(t.Context(), tt.cfg)
			if err == nil {
				_ = v.Close()
				t.Fatal("Subscribe accepted the config")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want it to say %q", err, tt.want)
			}
		})
	}

	sixteen := map[string]string{}
	for i := range 16 {
		k := fmt.Sprintf("%03d", i) + strings.Repeat("k", 125)
		sixteen[k] = strings.Repeat("v", 128)
	}
	v, err := Subscribe(t.Context(), Config{
		Addrs:    []string{"127.0.0.1:1"},
		ClientID: strings.Repeat("~", 128),
		Service:  strings.Repeat("s", 128),
		Labels:   sixteen,
	})
	if err != nil {
		t.Fatalf("Subscribe refused a config at the bounds: %v", err)
	}
	_ = v.Close()
}

// reportAt is a report condition: the applied cursor is c.
func reportAt(c []byte) func(*confgatev1.ReportRequest) bool {
	return func(r *confgatev1.ReportRequest) bool { return bytes.Equal(r.GetAppliedCursor(), c) }
}

// A snapshot and a later delta are each reported at once (well before the
// interval), with the view's cursor and digest, the client's identity and
// selector, over the connection of the stream.
func TestReportAfterChange(t *testing.T) {
	a, b, b2 := ent("app/a", "1", 0, 0), ent("app/b", "2", 0, 1), ent("app/b", "2b", 0, 2)
	more := make(chan struct{})
	g := startReportingGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if err := send(ss, snapshot(cur(2), initial, a, b)...); err != nil {
			return err
		}
		select {
		case <-more:
		case <-ss.Context().Done():
			return nil
		}
		if err := send(ss, delta(cur(3), put(b2))); err != nil {
			return err
		}
		return hold(ss)
	}, nil)
	const interval = 2 * time.Second // reports at least 400ms apart
	v := startView(t, Config{
		Addrs: []string{g.addr}, Prefixes: []string{"app/"},
		Service: "payments", Labels: map[string]string{"zone": "z1"},
		ReportInterval: interval,
	})
	waitSynced(t, v)

	first, n := g.waitReport(t, "the snapshot's cursor", reportAt(cur(2).Encode()))
	if n != 1 {
		t.Errorf("the snapshot's report is call %d, want the first", n)
	}
	id := g.request(t, 0).GetClient().GetClientId()
	if c := first.req.GetClient(); c.GetClientId() != id || c.GetService() != "payments" || c.GetLabels()["zone"] != "z1" {
		t.Errorf("report client = %v, want the subscription's (ID %s)", c, id)
	}
	if got := first.req.GetSelector().GetPrefixes(); !slices.Equal(got, []string{"app/"}) {
		t.Errorf("report selector = %q, want [app/]", got)
	}
	if !bytes.Equal(first.req.GetDigest(), digestOf(a, b)) || len(first.req.GetRejections()) != 0 {
		t.Errorf("report digest = %x, rejections %v; want %x and none", first.req.GetDigest(), first.req.GetRejections(), digestOf(a, b))
	}
	if sp := g.subscribePeer(t, 0); first.peer != sp {
		t.Errorf("report came from %s, the subscription from %s: not the same connection", first.peer, sp)
	}

	close(more)
	second, n := g.waitReport(t, "the delta's cursor", reportAt(cur(3).Encode()))
	if !bytes.Equal(second.req.GetDigest(), digestOf(a, b2)) || !bytes.Equal(second.req.GetDigest(), v.Digest()) {
		t.Errorf("report digest = %x, want the view's %x", second.req.GetDigest(), digestOf(a, b2))
	}
	if d := second.at.Sub(first.at); n != 2 || d >= interval {
		t.Errorf("the delta's report is call %d, %v after the snapshot's; want the second, before the interval (%v)", n, d, interval)
	}
}

// A burst of deltas is reported a few times, not once per delta: reports
// are at least ReportInterval/5 apart, and the last one holds the final
// cursor and digest.
func TestReportCoalescesBursts(t *testing.T) {
	const deltas = 60
	g := startReportingGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if err := send(ss, snapshot(cur(1), initial, ent("k", "v0", 0, 0))...); err != nil {
			return err
		}
		for i := range deltas {
			time.Sleep(5 * time.Millisecond)
			off := int64(i + 1)
			if err := send(ss, delta(cur(off+1), put(ent("k", fmt.Sprint("v", off), 0, off)))); err != nil {
				return err
			}
		}
		return hold(ss)
	}, nil)
	const interval = time.Second // reports at least 200ms apart
	v := startView(t, Config{Addrs: []string{g.addr}, ReportInterval: interval})
	waitSynced(t, v)

	last, n := g.waitReport(t, "the final cursor", reportAt(cur(deltas+1).Encode()))
	if want := digestOf(ent("k", fmt.Sprint("v", deltas), 0, deltas)); !bytes.Equal(last.req.GetDigest(), want) {
		t.Errorf("final report digest = %x, want %x", last.req.GetDigest(), want)
	}
	if n > 6 {
		t.Errorf("%d reports for a snapshot and %d deltas, want a few", n, deltas)
	}
	calls := g.reportCalls()[:n]
	for i := 1; i < len(calls); i++ {
		if d := calls[i].at.Sub(calls[i-1].at); d < interval/10 {
			t.Errorf("reports %d and %d are %v apart, want about %v at least", i-1, i, d, interval/5)
		}
	}
}

// An idle view reports every ReportInterval, with the same cursor and
// digest.
func TestReportPeriodicWhileIdle(t *testing.T) {
	a := ent("a", "1", 0, 0)
	g := startReportingGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if err := send(ss, snapshot(cur(1), initial, a)...); err != nil {
			return err
		}
		return hold(ss)
	}, nil)
	const interval = 100 * time.Millisecond
	v := startView(t, Config{Addrs: []string{g.addr}, ReportInterval: interval})
	waitSynced(t, v)
	eventually(t, "5 reports", func() bool { return len(g.reportCalls()) >= 5 })
	calls := g.reportCalls()
	for i, rc := range calls {
		if !bytes.Equal(rc.req.GetAppliedCursor(), cur(1).Encode()) || !bytes.Equal(rc.req.GetDigest(), digestOf(a)) {
			t.Errorf("report %d: cursor %x digest %x, want the view's", i, rc.req.GetAppliedCursor(), rc.req.GetDigest())
		}
		// The first stream message and the snapshot's end may each ask
		// for a report at once (spaced by interval/5); from then on the
		// view is idle and reports come every interval.
		want := interval / 2
		if i == 1 {
			want = interval / 10
		}
		if i > 0 {
			if d := rc.at.Sub(calls[i-1].at); d < want {
				t.Errorf("reports %d and %d are %v apart, want at least %v", i-1, i, d, want)
			}
		}
	}
}

// rejected lists a report's rejections as "key@partition:offset=reason"
// ("key@-" without a version).
func rejected(r *confgatev1.ReportRequest) []string {
	var out []string
	for _, rj := range r.GetRejections() {
		v := "-"
		if rj.GetVersion() != nil {
			v = fmt.Sprintf("%d:%d", rj.GetVersion().GetPartition(), rj.GetVersion().GetOffset())
		}
		out = append(out, fmt.Sprintf("%s@%s=%s", rj.GetKey(), v, rj.GetReason()))
	}
	return out
}

// Reject and Accept reach the gateway: a rejection carries the key's
// version, is reported until the key changes or Accept clears it, and a
// key the view does not hold is rejected without a version.
func TestReportRejections(t *testing.T) {
	a, b, b2 := ent("app/a", "1", 0, 0), ent("app/b", "2", 0, 1), ent("app/b", "2b", 0, 2)
	more := make(chan struct{})
	g := startReportingGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if err := send(ss, snapshot(cur(2), initial, a, b)...); err != nil {
			return err
		}
		select {
		case <-more:
		case <-ss.Context().Done():
			return nil
		}
		if err := send(ss, delta(cur(3), put(b2))); err != nil {
			return err
		}
		return hold(ss)
	}, nil)
	v := startView(t, Config{Addrs: []string{g.addr}, Prefixes: []string{"app/"}, ReportInterval: 500 * time.Millisecond})
	waitSynced(t, v)
	g.waitReport(t, "the snapshot", reportAt(cur(2).Encode()))

	rejects := func(want ...string) func(*confgatev1.ReportRequest) bool {
		return func(r *confgatev1.ReportRequest) bool { return slices.Equal(rejected(r), want) }
	}
	v.Reject("app/a", "bad json")
	v.Reject("app/new", "required key missing")
	v.Reject("db/x", "outside the selector: ignored")
	g.waitReport(t, "two rejections", rejects("app/a@0:0=bad json", "app/new@-=required key missing"))

	v.Reject("app/b", "too big")
	g.waitReport(t, "app/b rejected at 0:1", rejects("app/a@0:0=bad json", "app/b@0:1=too big", "app/new@-=required key missing"))
	close(more) // app/b changes: its rejection ends
	got, _ := g.waitReport(t, "the delta's cursor", reportAt(cur(3).Encode()))
	if want := []string{"app/a@0:0=bad json", "app/new@-=required key missing"}; !slices.Equal(rejected(got.req), want) {
		t.Errorf("rejections after app/b changed = %q, want %q", rejected(got.req), want)
	}

	v.Accept("app/a")
	v.Accept("app/never-rejected")
	g.waitReport(t, "app/a accepted", rejects("app/new@-=required key missing"))
	v.Accept("app/new")
	g.waitReport(t, "no rejections at the delta's cursor", func(r *confgatev1.ReportRequest) bool {
		return bytes.Equal(r.GetAppliedCursor(), cur(3).Encode()) && len(r.GetRejections()) == 0 && r.GetClient() != nil
	})
}

// The view keeps the latest rejection of the 100 most recently rejected
// keys, cuts long reasons at a rune boundary and mends invalid UTF-8.
func TestRejectionsBounded(t *testing.T) {
	g := startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if err := send(ss, snapshot(cur(1), initial, ent("k0", "v", 0, 0))...); err != nil {
			return err
		}
		return hold(ss)
	})
	v := startView(t, Config{Addrs: []string{g.addr}, ReportInterval: -1})
	waitSynced(t, v)
	v.Reject("k0", "first")
	for i := range 104 {
		v.Reject(fmt.Sprintf("k%03d", i+1), "r")
	}
	v.Reject("k050", "again") // the latest per key, and now the newest
	v.Reject("k105", "r")
	r := v.report(v.state.Load())
	if len(r.GetRejections()) != maxRejections {
		t.Fatalf("%d rejections kept, want %d", len(r.GetRejections()), maxRejections)
	}
	keys := map[string]string{}
	for _, rj := range r.GetRejections() {
		keys[rj.GetKey()] = rj.GetReason()
	}
	// 106 keys rejected, k050 again: k0 and k001..k005 are the oldest.
	for _, k := range []string{"k0", "k001", "k005"} {
		if _, ok := keys[k]; ok {
			t.Errorf("%s kept, want it dropped as one of the oldest", k)
		}
	}
	if keys["k050"] != "again" || keys["k006"] != "r" || keys["k105"] != "r" {
		t.Errorf("k050 %q, k006 %q, k105 %q: want again, r, r", keys["k050"], keys["k006"], keys["k105"])
	}

	v.Reject("k0", strings.Repeat("é", 600)+"\xff")
	for _, rj := range v.report(v.state.Load()).GetRejections() {
		if rj.GetKey() != "k0" {
			continue
		}
		if n := len(rj.GetReason()); n > maxRejectionReason || n < maxRejectionReason-1 || !strings.HasSuffix(rj.GetReason(), "é") {
			t.Errorf("long reason cut to %d bytes ending %q, want %d at a rune boundary", n, rj.GetReason()[n-4:], maxRejectionReason)
		}
		if rj.GetVersion().GetOffset() != 0 || rj.GetVersion() == nil {
			t.Errorf("k0 rejected at %v, want 0:0", rj.GetVersion())
		}
	}
	v.Reject("k0", "bad \xff byte")
	for _, rj := range v.report(v.state.Load()).GetRejections() {
		if rj.GetKey() == "k0" && rj.GetReason() != "bad \uFFFD byte" {
			t.Errorf("reason = %q, want the invalid byte replaced", rj.GetReason())
		}
	}
	v.Reject("\xff", "key not UTF-8: ignored")
	v.Reject("", "no key: ignored")
	for _, rj := range v.report(v.state.Load()).GetRejections() {
		if rj.GetKey() == "\xff" || rj.GetKey() == "" {
			t.Errorf("rejection of key %q kept", rj.GetKey())
		}
	}
}

// A gateway without Report (UNIMPLEMENTED) gets one attempt per
// connection: the view stops reporting quietly, keeps applying changes,
// and tries again after a reconnect.
func TestReportUnimplementedStopsReporting(t *testing.T) {
	const deltas = 20
	var reportsDuringFirst atomic.Int64
	var g *fakeGateway
	g = startGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if call > 0 {
			if err := send(ss, delta(cur(deltas+2), put(ent("k", "last", 0, deltas+1)))); err != nil {
				return err
			}
			return hold(ss)
		}
		if err := send(ss, snapshot(cur(1), initial, ent("k", "v0", 0, 0))...); err != nil {
			return err
		}
		for i := range deltas {
			time.Sleep(10 * time.Millisecond) // several report intervals
			off := int64(i + 1)
			if err := send(ss, delta(cur(off+1), put(ent("k", fmt.Sprint("v", off), 0, off)))); err != nil {
				return err
			}
		}
		reportsDuringFirst.Store(int64(len(g.reportCalls())))
		return nil // the view reconnects
	})
	v := startView(t, Config{Addrs: []string{g.addr}, ReportInterval: 20 * time.Millisecond})
	waitSynced(t, v)
	eventually(t, "the second stream's delta", func() bool { return v.Cursor() == cur(deltas+2).String() })
	if n := reportsDuringFirst.Load(); n != 1 {
		t.Errorf("%d reports on the first connection, want 1 (then none after UNIMPLEMENTED)", n)
	}
	eventually(t, "a report on the second connection", func() bool { return len(g.reportCalls()) >= 2 })
	time.Sleep(100 * time.Millisecond) // five intervals
	calls := g.reportCalls()
	if len(calls) != 2 {
		t.Errorf("%d reports in all, want one per connection", len(calls))
	}
	for i, rc := range calls {
		if sp := g.subscribePeer(t, i); rc.peer != sp {
			t.Errorf("report %d came from %s, want stream %d's connection %s", i, rc.peer, i, sp)
		}
	}
	if got := viewKeys(v, ""); !slices.Equal(got, []string{fmt.Sprintf("k=last@0:%d", deltas+1)}) {
		t.Errorf("view = %q", got)
	}
	if st := v.Status(); !st.Connected || status.Code(st.LastError) == codes.Unimplemented {
		t.Errorf("status = %+v, want connected and no report error", st)
	}
}

// A report that fails is retried at the next tick, not at once, and does
// not disturb the subscription.
func TestReportRetriedAfterFailure(t *testing.T) {
	g := startReportingGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if err := send(ss, snapshot(cur(1), initial, ent("a", "1", 0, 0))...); err != nil {
			return err
		}
		return hold(ss)
	}, func(n int, req *confgatev1.ReportRequest) error {
		if n == 0 {
			return status.Error(codes.Unavailable, "fleet topic unavailable")
		}
		return nil
	})
	const interval = 150 * time.Millisecond
	v := startView(t, Config{Addrs: []string{g.addr}, ReportInterval: interval})
	waitSynced(t, v)
	eventually(t, "a second report", func() bool { return len(g.reportCalls()) >= 2 })
	calls := g.reportCalls()
	if d := calls[1].at.Sub(calls[0].at); d < interval/2 {
		t.Errorf("retried %v after the failure, want at the next tick (%v)", d, interval)
	}
	if st := v.Status(); !st.Connected || st.Reconnects != 0 {
		t.Errorf("status = %+v, want the stream undisturbed", st)
	}
}

// A negative ReportInterval turns reporting off; Subscribe still says who
// the client is.
func TestReportingOff(t *testing.T) {
	g := startReportingGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if err := send(ss, append(snapshot(cur(1), initial, ent("a", "1", 0, 0)), delta(cur(2), put(ent("a", "2", 0, 1))))...); err != nil {
			return err
		}
		return hold(ss)
	}, nil)
	v := startView(t, Config{Addrs: []string{g.addr}, ReportInterval: -1, ClientID: "quiet"})
	waitSynced(t, v)
	eventually(t, "the delta", func() bool { return v.Cursor() == cur(2).String() })
	v.Reject("a", "no")
	v.Accept("a")
	v.Reject("a", "no")
	time.Sleep(100 * time.Millisecond)
	if n := len(g.reportCalls()); n != 0 {
		t.Errorf("%d reports with reporting off", n)
	}
	if id := g.request(t, 0).GetClient().GetClientId(); id != "quiet" {
		t.Errorf("client ID sent = %q, want quiet", id)
	}
}

// ReportDigestHook changes the digest reported, not the view's.
func TestReportDigestHook(t *testing.T) {
	a := ent("a", "1", 0, 0)
	g := startReportingGateway(t, func(call int, req *confgatev1.SubscribeRequest, ss stream) error {
		if err := send(ss, snapshot(cur(1), initial, a)...); err != nil {
			return err
		}
		return hold(ss)
	}, nil)
	v := startView(t, Config{Addrs: []string{g.addr}, ReportDigestHook: func(d []byte) []byte {
		d[0] ^= 0xff
		return d
	}})
	waitSynced(t, v)
	rc, _ := g.waitReport(t, "the snapshot", reportAt(cur(1).Encode()))
	want := digestOf(a)
	if !bytes.Equal(v.Digest(), want) {
		t.Errorf("view digest = %x, want %x untouched", v.Digest(), want)
	}
	want[0] ^= 0xff
	if !bytes.Equal(rc.req.GetDigest(), want) {
		t.Errorf("reported digest = %x, want the hook's %x", rc.req.GetDigest(), want)
	}
}
