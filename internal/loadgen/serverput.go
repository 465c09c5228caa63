package loadgen

import (
	"context"
	"math"
	"slices"
	"strings"
)

// putMetric is the gateway's histogram of unary calls; its Put series is
// how long the gateway itself took to answer a Put (the produce to Kafka,
// acks=all, and the checks around it), without the network or either
// side's scheduling. On one machine a load tool's own Put round trip
// shares its process with every subscriber's receipts, so the two differ
// under load: both are reported.
const putMetric = "confgate_gateway_request_seconds"

// bucketCounts are a cumulative histogram's counts by upper bound.
type bucketCounts map[float64]float64

// serverPuts reads the Put series of the gateway's request histogram from
// a Prometheus text endpoint. ok is false when the endpoint has none.
func serverPuts(ctx context.Context, url string) (bucketCounts, bool, error) {
	fams, err := scrape(ctx, url)
	if err != nil {
		return nil, false, err
	}
	fam, ok := fams[putMetric]
	if !ok {
		return nil, false, nil
	}
	for _, m := range fam.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "method" && strings.HasSuffix(l.GetValue(), "/Put") {
				out := bucketCounts{}
				for _, b := range m.GetHistogram().GetBucket() {
					out[b.GetUpperBound()] = float64(b.GetCumulativeCount())
				}
				return out, true, nil
			}
		}
	}
	return bucketCounts{}, true, nil
}

// histQuantile is the q-quantile (0..1) of what was observed between
// before and after, interpolated linearly inside its bucket as
// Prometheus's histogram_quantile does; NaN when nothing was observed.
// Seconds.
func histQuantile(before, after bucketCounts, q float64) float64 {
	bounds := make([]float64, 0, len(after))
	for b := range after {
		bounds = append(bounds, b)
	}
	slices.Sort(bounds)
	if len(bounds) == 0 {
		return math.NaN()
	}
	total := after[bounds[len(bounds)-1]] - before[bounds[len(bounds)-1]]
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	prevBound, prevCount := 0.0, 0.0
	for _, b := range bounds {
		c := after[b] - before[b]
		if c >= rank {
			if math.IsInf(b, 1) {
				return prevBound // past the last finite bucket: its bound
			}
			if c == prevCount {
				return b
			}
			return prevBound + (b-prevBound)*(rank-prevCount)/(c-prevCount)
		}
		prevBound, prevCount = b, c
	}
	return prevBound
}
