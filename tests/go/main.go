// franz-go (kgo, kadm) against Floe: admin, configs, keyed produce with headers, a group of two with a
// member leaving. Prints one JSON line of what it saw; tests/polyglot asserts on it.
// Usage: franz-go-scenario HOST:PORT TOPIC
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type member struct {
	client   *kgo.Client
	mu       sync.Mutex
	assigned int
	seen     []map[string]string
}

func (m *member) held() int { m.mu.Lock(); defer m.mu.Unlock(); return m.assigned }

func (m *member) count(pred func(map[string]string) bool) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.seen {
		if pred(r) {
			n++
		}
	}
	return n
}

func newMember(bootstrap, group, topic string) (*member, error) {
	m := &member{}
	count := func(parts map[string][]int32) int {
		n := 0
		for _, p := range parts {
			n += len(p)
		}
		return n
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.AutoCommitInterval(200*time.Millisecond),
		kgo.SessionTimeout(10*time.Second), kgo.HeartbeatInterval(500*time.Millisecond),
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, p map[string][]int32) {
			m.mu.Lock()
			m.assigned += count(p)
			m.mu.Unlock()
		}),
		kgo.OnPartitionsRevoked(func(ctx context.Context, c *kgo.Client, p map[string][]int32) {
			_ = c.CommitMarkedOffsets(ctx)
			m.mu.Lock()
			m.assigned -= count(p)
			m.mu.Unlock()
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, p map[string][]int32) {
			m.mu.Lock()
			m.assigned -= count(p)
			m.mu.Unlock()
		}),
	)
	if err != nil {
		return nil, err
	}
	m.client = cl
	go func() {
		for {
			fetches := cl.PollFetches(context.Background())
			if fetches.IsClientClosed() {
				return
			}
			fetches.EachRecord(func(r *kgo.Record) {
				n := ""
				for _, h := range r.Headers {
					if h.Key == "n" {
						n = string(h.Value)
					}
				}
				m.mu.Lock()
				m.seen = append(m.seen, map[string]string{"key": string(r.Key), "value": string(r.Value), "n": n})
				m.mu.Unlock()
			})
		}
	}()
	return m, nil
}

func until(what string, pred func() bool) {
	end := time.Now().Add(120 * time.Second)
	for !pred() {
		if time.Now().After(end) {
			fail(fmt.Errorf("timed out waiting for %s", what))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func must(err error) {
	if err != nil {
		fail(err)
	}
}

func configs(rc kadm.ResourceConfigs, err error) map[string]*kadm.Config {
	must(err)
	out := map[string]*kadm.Config{}
	for _, r := range rc {
		must(r.Err)
		for i := range r.Configs {
			out[r.Configs[i].Key] = &r.Configs[i]
		}
	}
	return out
}

func main() {
	bootstrap, topic := os.Args[1], os.Args[2]
	ctx := context.Background()
	out := map[string]any{}
	cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	must(err)
	adm := kadm.NewClient(cl)

	created, err := adm.CreateTopic(ctx, 2, 1, map[string]*string{"retention.ms": kadm.StringPtr("3600000")}, topic)
	must(err)
	must(created.Err)
	listed, err := adm.ListTopics(ctx)
	must(err)
	out["listed"] = listed.Has(topic)
	described := configs(adm.DescribeTopicConfigs(ctx, topic))
	out["configCount"] = len(described)
	out["retention"] = described["retention.ms"].MaybeValue()
	out["retentionSource"] = int(described["retention.ms"].Source)
	meta, err := adm.BrokerMetadata(ctx)
	must(err)
	broker := configs(adm.DescribeBrokerConfigs(ctx, meta.Brokers[0].NodeID))
	out["advertised"] = broker["advertised.listeners"].MaybeValue()
	out["numPartitions"] = broker["num.partitions"].MaybeValue()
	// the legacy AlterConfigs (kadm's "State" calls), as Sarama and older tools use it
	_, err = adm.AlterTopicConfigsState(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: kadm.StringPtr("7200000")}}, topic)
	must(err)
	out["altered"] = configs(adm.DescribeTopicConfigs(ctx, topic))["retention.ms"].MaybeValue()
	bad, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "bogus.config", Value: kadm.StringPtr("1")}}, topic)
	must(err)
	out["bogusError"] = fmt.Sprintf("%v %s", bad[0].Err, bad[0].ErrMessage)

	batch := func(from int) []*kgo.Record {
		var rs []*kgo.Record
		for i := from; i < from+10; i++ {
			n := strconv.Itoa(i)
			rs = append(rs, &kgo.Record{Topic: topic, Key: []byte("k" + n), Value: []byte("v" + n),
				Headers: []kgo.RecordHeader{{Key: "n", Value: []byte(n)}}})
		}
		return rs
	}
	must(cl.ProduceSync(ctx, batch(0)...).FirstErr())

	group := topic + "-group"
	a, err := newMember(bootstrap, group, topic)
	must(err)
	b, err := newMember(bootstrap, group, topic)
	must(err)
	until("both members to hold a partition", func() bool { return a.held() == 1 && b.held() == 1 })
	out["assignedBoth"] = []int{a.held(), b.held()}
	all := func(map[string]string) bool { return true }
	until("the first 10 records", func() bool { return a.count(all)+b.count(all) >= 10 })
	b.client.Close() // leaves the group: its partition moves to a
	until("a to hold both partitions", func() bool { return a.held() == 2 })
	must(cl.ProduceSync(ctx, batch(10)...).FirstErr())
	later := func(r map[string]string) bool { n, _ := strconv.Atoi(r["n"]); return n >= 10 }
	until("the next 10 records at the remaining member", func() bool { return a.count(later) >= 10 })
	distinct := map[string]bool{}
	ok := true
	for _, m := range []*member{a, b} {
		m.mu.Lock()
		for _, r := range m.seen {
			distinct[r["n"]] = true
			ok = ok && r["key"] == "k"+r["n"] && r["value"] == "v"+r["n"]
		}
		m.mu.Unlock()
	}
	out["keysAndHeaders"] = ok
	out["distinct"] = len(distinct)
	until("commits to reach the end", func() bool {
		offsets, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			return false
		}
		var sum int64
		offsets.Each(func(o kadm.OffsetResponse) { sum += o.At })
		return sum == 20
	})
	out["committed"] = 20
	a.client.Close()
	_, err = adm.DeleteTopics(ctx, topic)
	must(err)
	until("the topic to be gone", func() bool {
		listed, err := adm.ListTopics(ctx)
		return err == nil && !listed.Has(topic)
	})
	out["deleted"] = true
	cl.Close()
	report, err := json.Marshal(out)
	must(err)
	fmt.Println(string(report))
}
