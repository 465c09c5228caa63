package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Summary is one FanoutResult as figures: what the tables show, and what
// `-o json` prints. Latencies are milliseconds; a figure that could not be
// measured (no server to sample, nothing delivered) is null in JSON.
type Summary struct {
	Target      string  `json:"target"`
	Subscribers int     `json:"subscribers"`
	Conns       int     `json:"conns"`
	Prefixes    int     `json:"prefixes"`
	Keys        int     `json:"keys"`
	Rate        float64 `json:"rate"`
	Size        int     `json:"size"`
	// DurationS is the measured writes' duration, seconds.
	DurationS float64 `json:"duration_s"`

	DeliveryP50Ms  float64 `json:"delivery_p50_ms"`
	DeliveryP99Ms  float64 `json:"delivery_p99_ms"`
	DeliveryP999Ms float64 `json:"delivery_p999_ms"`
	DeliveryMaxMs  float64 `json:"delivery_max_ms"`
	AllHaveP50Ms   float64 `json:"all_have_p50_ms"`
	AllHaveP99Ms   float64 `json:"all_have_p99_ms"`
	PutP50Ms       float64 `json:"put_p50_ms"`
	PutP99Ms       float64 `json:"put_p99_ms"`
	// The baseline writer's round trip, when the run had one.
	BaselinePutP50Ms *float64 `json:"baseline_put_p50_ms"`
	BaselinePutP99Ms *float64 `json:"baseline_put_p99_ms"`
	// The gateway's own time to answer a Put, from its metrics.
	ServerPutP50Ms *float64 `json:"server_put_p50_ms"`
	ServerPutP99Ms *float64 `json:"server_put_p99_ms"`

	Writes      int64 `json:"writes"`
	WriteErrors int64 `json:"write_errors"`
	Expected    int64 `json:"expected"`
	Delivered   int64 `json:"delivered"`
	Duplicates  int64 `json:"duplicates"`
	// DeliveredPct is Delivered/Expected in percent (100 when nothing was
	// expected).
	DeliveredPct float64 `json:"delivered_pct"`

	// ServerCPUS is the server's CPU over the measured window, seconds;
	// ServerCPUPerM per million deliveries.
	ServerCPUS    *float64 `json:"server_cpu_s"`
	ServerCPUPerM *float64 `json:"server_cpu_s_per_1m"`
	// Server RSS before any subscriber, with all of them idle, the most
	// sampled, bytes; and (idle - base) per subscriber, KiB.
	ServerRSSBase   *int64   `json:"server_rss_base_bytes"`
	ServerRSSIdle   *int64   `json:"server_rss_idle_bytes"`
	ServerRSSMax    *int64   `json:"server_rss_max_bytes"`
	ServerKiBPerSub *float64 `json:"server_rss_per_sub_kib"`

	ClientCPUS    float64  `json:"client_cpu_s"`
	ClientCPUPerM *float64 `json:"client_cpu_s_per_1m"`
	ConnectS      float64  `json:"connect_s"`
	ElapsedS      float64  `json:"elapsed_s"`
}

// Summarize turns a result into figures.
func Summarize(r *FanoutResult) Summary {
	c := r.Config
	s := Summary{
		Target: r.Target, Subscribers: c.Subscribers, Conns: c.Conns, Prefixes: c.Prefixes,
		Keys: c.Keys, Rate: c.Rate, Size: c.Size, DurationS: c.Duration.Seconds(),
		Writes: r.Writes, WriteErrors: r.WriteErrors, Expected: r.Expected,
		Delivered: r.Delivered, Duplicates: r.Duplicates,
		ClientCPUS: r.ClientCPU.Seconds(), ConnectS: r.ConnectTime.Seconds(), ElapsedS: r.Elapsed.Seconds(),
	}
	s.DeliveryP50Ms = quantileMs(r.Delivery, 50)
	s.DeliveryP99Ms = quantileMs(r.Delivery, 99)
	s.DeliveryP999Ms = quantileMs(r.Delivery, 99.9)
	if r.Delivery != nil {
		s.DeliveryMaxMs = usMs(r.Delivery.Max())
	}
	s.AllHaveP50Ms = quantileMs(r.AllHave, 50)
	s.AllHaveP99Ms = quantileMs(r.AllHave, 99)
	s.PutP50Ms = quantileMs(r.Put, 50)
	s.PutP99Ms = quantileMs(r.Put, 99)
	if !math.IsNaN(r.ServerPutP50) && !math.IsNaN(r.ServerPutP99) && (r.ServerPutP50 != 0 || r.ServerPutP99 != 0) {
		p50, p99 := r.ServerPutP50*1000, r.ServerPutP99*1000
		s.ServerPutP50Ms, s.ServerPutP99Ms = &p50, &p99
	}
	if r.BaselinePut != nil && r.BaselinePut.TotalCount() > 0 {
		p50, p99 := quantileMs(r.BaselinePut, 50), quantileMs(r.BaselinePut, 99)
		s.BaselinePutP50Ms, s.BaselinePutP99Ms = &p50, &p99
	}
	s.DeliveredPct = 100
	if r.Expected > 0 {
		s.DeliveredPct = 100 * float64(r.Delivered) / float64(r.Expected)
	}
	if r.Delivered > 0 {
		v := r.ClientCPU.Seconds() / float64(r.Delivered) * 1e6
		s.ClientCPUPerM = &v
	}
	if r.ServerKnown {
		cpu := r.ServerCPU.Seconds()
		base, idle, peak := r.ServerRSSBase, r.ServerRSSIdle, r.ServerRSSMax
		s.ServerCPUS, s.ServerRSSBase, s.ServerRSSIdle, s.ServerRSSMax = &cpu, &base, &idle, &peak
		if r.Delivered > 0 {
			v := cpu / float64(r.Delivered) * 1e6
			s.ServerCPUPerM = &v
		}
		if c.Subscribers > 0 {
			v := float64(idle-base) / float64(c.Subscribers) / 1024
			s.ServerKiBPerSub = &v
		}
	}
	return s
}

func usMs(us int64) float64 { return float64(us) / 1000 }

func quantileMs(h *hdrhistogram.Histogram, q float64) float64 {
	if h == nil || h.TotalCount() == 0 {
		return 0
	}
	return usMs(h.ValueAtQuantile(q))
}

// reportHeader is the table's columns.
var reportHeader = []string{
	"target", "load", "p50", "p99", "p99.9", "max", "all-have p99",
	"put p50", "put p99", "gw put p50", "gw put p99", "raw put p50", "raw put p99", "delivered", "dups",
	"srv cpu s/1M", "srv KiB/sub", "cli cpu s/1M",
}

// row is one result's cells.
func (s Summary) row() []string {
	return []string{
		s.Target,
		fmt.Sprintf("%d×%s/s", s.Subscribers, strconv.FormatFloat(s.Rate, 'f', -1, 64)),
		fmtMs(s.DeliveryP50Ms), fmtMs(s.DeliveryP99Ms), fmtMs(s.DeliveryP999Ms), fmtMs(s.DeliveryMaxMs),
		fmtMs(s.AllHaveP99Ms),
		fmtMs(s.PutP50Ms), fmtMs(s.PutP99Ms), fmtOptMs(s.ServerPutP50Ms), fmtOptMs(s.ServerPutP99Ms), fmtOptMs(s.BaselinePutP50Ms), fmtOptMs(s.BaselinePutP99Ms),
		fmt.Sprintf("%.2f%%", s.DeliveredPct),
		strconv.FormatInt(s.Duplicates, 10),
		fmtOpt(s.ServerCPUPerM, 2), fmtOpt(s.ServerKiBPerSub, 1), fmtOpt(s.ClientCPUPerM, 2),
	}
}

// fmtMs shows milliseconds with 2 decimals, or seconds from 1 s up.
func fmtMs(v float64) string {
	if v >= 1000 {
		return fmt.Sprintf("%.2fs", v/1000)
	}
	return fmt.Sprintf("%.2fms", v)
}

func fmtOptMs(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmtMs(*v)
}

func fmtOpt(v *float64, prec int) string {
	if v == nil {
		return "-"
	}
	return strconv.FormatFloat(*v, 'f', prec, 64)
}

// WriteText writes one table row per result, aligned (text/tabwriter).
// Latencies are from the write call: delivery percentiles over every
// (write, subscriber) receipt, all-have when the last concerned subscriber
// had a write. Server CPU and client CPU are seconds per million
// deliveries; server RSS per subscriber is (idle - base) / subscribers.
func WriteText(w io.Writer, rs []*FanoutResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(reportHeader, "\t")))
	for _, r := range rs {
		fmt.Fprintln(tw, strings.Join(Summarize(r).row(), "\t"))
	}
	return tw.Flush()
}

// WriteMarkdown writes the same table as GitHub markdown.
func WriteMarkdown(w io.Writer, rs []*FanoutResult) error {
	var b strings.Builder
	b.WriteString("| " + strings.Join(reportHeader, " | ") + " |\n")
	b.WriteString("|" + strings.Repeat(" --- |", len(reportHeader)) + "\n")
	for _, r := range rs {
		cells := Summarize(r).row()
		for i, c := range cells {
			cells[i] = strings.ReplaceAll(c, "|", `\|`)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes one Summary per result, one JSON object per line.
func WriteJSON(w io.Writer, rs []*FanoutResult) error {
	enc := json.NewEncoder(w)
	for _, r := range rs {
		if err := enc.Encode(Summarize(r)); err != nil {
			return err
		}
	}
	return nil
}
