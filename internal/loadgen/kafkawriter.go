package loadgen

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// KafkaWriter is a plain franz-go producer (acks=all, no linger, the
// client's defaults otherwise) writing to topic, created with partitions
// when absent: the baseline a gateway's Put is compared with
// (FanoutConfig.Baseline). close stops the client.
func KafkaWriter(ctx context.Context, brokers []string, topic string, partitions int32, opts ...kgo.Opt) (w Writer, close func(), err error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(0),
	}, opts...)...)
	if err != nil {
		return nil, nil, fmt.Errorf("loadgen: baseline producer: %w", err)
	}
	resp, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, -1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		cl.Close()
		return nil, nil, fmt.Errorf("loadgen: baseline topic %s: %w", topic, err)
	}
	w = func(ctx context.Context, key string, value []byte) error {
		return cl.ProduceSync(ctx, &kgo.Record{Key: []byte(key), Value: value}).FirstErr()
	}
	return w, cl.Close, nil
}
