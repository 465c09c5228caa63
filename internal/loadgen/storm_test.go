package loadgen

import (
	"context"
	"testing"
	"time"

	"github.com/confgate/confgate/internal/testkit"
)

func TestRunStorm(t *testing.T) {
	k := testkit.StartKafka(t)
	topic := testkit.Topic(t)
	gA := testkit.StartGateway(t, k, topic, testkit.Options{})
	gB := testkit.StartGateway(t, k, topic, testkit.Options{})
	// A gateway on another topic: every resume there is a reset.
	gOther := testkit.StartGateway(t, k, testkit.Topic(t), testkit.Options{})
	const subs = 50
	for _, tc := range []struct {
		name  string
		to    *testkit.Gateway
		conns int
		// wantWithout: subscribers that resume without a snapshot.
		wantWithout int
	}{
		{"a connection per subscriber", gB, 0, subs},
		{"shared connections", gB, 5, subs},
		{"another topic resets everyone", gOther, 10, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			history := testkit.Metric(t, tc.to, "confgate_gateway_resumes_total", "history")
			diff := testkit.Metric(t, tc.to, "confgate_gateway_resumes_total", "diff")
			reset := testkit.Metric(t, tc.to, "confgate_gateway_resumes_total", "reset")
			res, err := RunStorm(ctx, StormConfig{
				From: gA.Addr, To: tc.to.Addr, Subscribers: subs, Conns: tc.conns, Prefixes: 5,
				Rate: 100, Size: 256, Warmup: 300 * time.Millisecond, MaxWait: 20 * time.Second,
				MetricsURL: "http://" + tc.to.Admin + "/metrics",
			})
			if err != nil {
				t.Fatal(err)
			}
			s := res.Summary()
			t.Logf("%+v", s)
			if res.Subscribed != subs || res.Current != subs || res.Resumed != subs {
				t.Errorf("subscribed %d, current %d, resumed %d; want %d each", res.Subscribed, res.Current, res.Resumed, subs)
			}
			if res.WithoutSnapshot != tc.wantWithout {
				t.Errorf("resumed without snapshot: %d, want %d", res.WithoutSnapshot, tc.wantWithout)
			}
			if res.ResumeLat.TotalCount() != subs || res.CurrentLat.TotalCount() != subs || res.AllCurrent <= 0 {
				t.Errorf("histograms: %d resumes, %d current, all current after %s", res.ResumeLat.TotalCount(), res.CurrentLat.TotalCount(), res.AllCurrent)
			}
			if res.ErrorsBeforeCut != 0 || res.ResumeErrors != 0 || res.ErrorsAfterResume != 0 || res.WriteErrors != 0 {
				t.Errorf("errors: %+v", s)
			}
			if res.Writes == 0 {
				t.Error("no writes")
			}
			// The gateway's own count of resumes agrees with the
			// subscribers', and with what the storm read from /metrics.
			dh := int64(testkit.Metric(t, tc.to, "confgate_gateway_resumes_total", "history") - history)
			dd := int64(testkit.Metric(t, tc.to, "confgate_gateway_resumes_total", "diff") - diff)
			dr := int64(testkit.Metric(t, tc.to, "confgate_gateway_resumes_total", "reset") - reset)
			if dh+dd != int64(tc.wantWithout) || dr != int64(subs-tc.wantWithout) {
				t.Errorf("gateway resumes: history %d, diff %d, reset %d; want %d without snapshot", dh, dd, dr, tc.wantWithout)
			}
			if res.Resumes["history"] != dh || res.Resumes["diff"] != dd || res.Resumes["reset"] != dr {
				t.Errorf("resumes read from /metrics %v, registry says history %d diff %d reset %d", res.Resumes, dh, dd, dr)
			}
			if want := 100 * float64(tc.wantWithout) / subs; s.WithoutSnapshotPc != want {
				t.Errorf("share %.1f%%, want %.1f%%", s.WithoutSnapshotPc, want)
			}
		})
	}
}

func TestStormConfigErrors(t *testing.T) {
	for _, cfg := range []StormConfig{{From: "a"}, {To: "b"}, {From: "a", To: "b", Rate: -1}} {
		if _, err := RunStorm(context.Background(), cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}
