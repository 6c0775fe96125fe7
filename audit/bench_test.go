package audit

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkAppend measures one appender alone: every Append is its own
// commit group, so this is the latency of a signed, fsynced record.
func BenchmarkAppend(b *testing.B) {
	l, err := Open(b.TempDir(), testKey(b, 1), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	r := testRecord(1)
	for b.Loop() {
		if _, err := l.Append(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAuditThroughput measures how many records per second reach the
// disk with many concurrent writers: real files in b.TempDir(), fsync on,
// default options. Each sub-benchmark runs b.SetParallelism(p), that is
// p×GOMAXPROCS goroutines (named g=…), through b.RunParallel. Append waits
// for each record's fsync; Add queues and the benchmark ends with one Sync,
// so its figure also counts every record as durable.
func BenchmarkAuditThroughput(b *testing.B) {
	for _, op := range []string{"Append", "Add"} {
		for _, p := range []int{1, 16, 128} {
			b.Run(fmt.Sprintf("%s/g=%d", op, p*gomaxprocs()), func(b *testing.B) {
				l, err := Open(b.TempDir(), testKey(b, 1), Options{})
				if err != nil {
					b.Fatal(err)
				}
				r := testRecord(1)
				b.SetParallelism(p)
				b.ResetTimer()
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						var err error
						if op == "Append" {
							_, err = l.Append(r)
						} else {
							err = l.Add(context.Background(), r)
						}
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
				if err := l.Sync(context.Background()); err != nil {
					b.Fatal(err)
				}
				elapsed := time.Since(start)
				b.StopTimer()
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
				if err := l.Close(); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }
