package store

import (
	"errors"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

// TestClassifyProduceErr: Kafka's answers become the store's own errors,
// so the gateway maps them without knowing Kafka.
func TestClassifyProduceErr(t *testing.T) {
	retriable := errors.New("broker went away")
	for _, tc := range []struct {
		in   error
		want error // nil: left as it is
	}{
		{kerr.MessageTooLarge, ErrTooLargeForTopic},
		{fmt.Errorf("wrapped: %w", kerr.RecordListTooLarge), ErrTooLargeForTopic},
		{kerr.TopicAuthorizationFailed, ErrWriteDenied},
		{kerr.ClusterAuthorizationFailed, ErrWriteDenied},
		{kerr.InvalidRecord, ErrWriteRejected},
		{kerr.CorruptMessage, nil}, // retriable in Kafka's table
		{kerr.NotLeaderForPartition, nil},
		{retriable, nil},
	} {
		got := classifyProduceErr(tc.in)
		if !errors.Is(got, tc.in) {
			t.Errorf("%v: the cause was lost: %v", tc.in, got)
		}
		for _, kind := range []error{ErrTooLargeForTopic, ErrWriteDenied, ErrWriteRejected} {
			if errors.Is(got, kind) != (kind == tc.want) {
				t.Errorf("%v: classified %v, want %v", tc.in, got, tc.want)
			}
		}
	}
}
