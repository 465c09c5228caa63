package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Usage is a server's cumulative CPU time and current resident memory.
type Usage struct {
	CPU time.Duration
	RSS int64
}

// clockTicks is Linux's USER_HZ, the unit of /proc/<pid>/stat times: 100
// on every architecture Go supports (the kernel fixes it for userspace).
const clockTicks = 100

// ProcUsage reads a local process's CPU (user + system) and RSS from /proc.
func ProcUsage(pid int) (Usage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Usage{}, fmt.Errorf("read process %d: %w", pid, err)
	}
	// The command name (field 2) may hold spaces: fields count from the
	// last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return Usage{}, fmt.Errorf("process %d: malformed /proc stat", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	// After ')': state(3) ... utime(14) stime(15) ... rss(24), so index
	// field-3.
	if len(f) < 22 {
		return Usage{}, fmt.Errorf("process %d: short /proc stat", pid)
	}
	ut, err1 := strconv.ParseInt(f[14-3], 10, 64)
	st, err2 := strconv.ParseInt(f[15-3], 10, 64)
	rss, err3 := strconv.ParseInt(f[24-3], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return Usage{}, fmt.Errorf("process %d: malformed /proc stat fields", pid)
	}
	return Usage{
		CPU: time.Duration(ut+st) * time.Second / clockTicks,
		RSS: rss * int64(os.Getpagesize()),
	}, nil
}

// MetricsUsage reads process_cpu_seconds_total and
// process_resident_memory_bytes from a Prometheus text endpoint.
func MetricsUsage(ctx context.Context, url string) (Usage, error) {
	fams, err := scrape(ctx, url)
	if err != nil {
		return Usage{}, err
	}
	var u Usage
	cpu, ok1 := fams["process_cpu_seconds_total"]
	rss, ok2 := fams["process_resident_memory_bytes"]
	if !ok1 || !ok2 || len(cpu.GetMetric()) == 0 || len(rss.GetMetric()) == 0 {
		return Usage{}, fmt.Errorf("metrics %s: no process_cpu_seconds_total or process_resident_memory_bytes", url)
	}
	u.CPU = time.Duration(metricValue(cpu.GetMetric()[0]) * float64(time.Second))
	u.RSS = int64(metricValue(rss.GetMetric()[0]))
	return u, nil
}

// scrape reads a Prometheus text endpoint's metric families.
func scrape(ctx context.Context, url string) (map[string]*dto.MetricFamily, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("metrics %s: %w", url, err)
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics %s: %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("metrics %s: %w", url, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("metrics %s: %w", url, err)
	}
	return fams, nil
}

// metricValue is a sample's value, whatever the endpoint typed it as.
func metricValue(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return m.GetUntyped().GetValue()
}

// Usage sums the server's processes (or reads its metrics endpoint).
// ok is false when the server named no way to read it.
func (s Server) Usage(ctx context.Context) (u Usage, ok bool, err error) {
	switch {
	case len(s.PIDs) > 0:
		for _, pid := range s.PIDs {
			p, err := ProcUsage(pid)
			if err != nil {
				return Usage{}, true, err
			}
			u.CPU += p.CPU
			u.RSS += p.RSS
		}
		return u, true, nil
	case s.MetricsURL != "":
		u, err := MetricsUsage(ctx, s.MetricsURL)
		return u, true, err
	}
	return Usage{}, false, nil
}
