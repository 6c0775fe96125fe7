package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTable reads go test -bench output and a sim result as bench/run
// writes them and prints each figure beside its baseline.
func TestTable(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("pairs.txt", `goos: linux
BenchmarkNegotiation/tracing=off-2         	    2000	   2000000 ns/op	  131072 B/op	     852 allocs/op
BenchmarkNegotiation/tracing=off-2         	    2000	   1800000 ns/op	  131072 B/op	     852 allocs/op
BenchmarkNegotiation/tracing=off-2         	    2000	   2200000 ns/op	  131072 B/op	     852 allocs/op
BenchmarkNegotiationFloor-2                	    2000	   1000000 ns/op	       400.0 disk-µs/op
BenchmarkNegotiation/tracing=off-2         	    2000	   2000000 ns/op	       800.0 audit-µs/op
BenchmarkIntentGossip/tracing=off-2        	     500	   9000000 ns/op	  18000000 cpu-ns/op
PASS
`)
	write("hostile.txt", "BenchmarkHostileFlood-2 1 900000000 ns/op 1.5 p99-flood/calm\nBenchmarkHostileFlood-2 1 900000000 ns/op 2.5 p99-flood/calm\n")
	write("sim-gossip-real.json", `{"nodes":1000,"clock":"real","intents":{"delivery_ratio":1,"latency_ms":{"p99":1300},"cpu_us_per_delivery":900},
		"baseline":{"intents":{"delivery_ratio":1,"latency_ms":{"p99":1000},"cpu_us_per_delivery":600}}}`)
	var out bytes.Buffer
	if err := run(&out, dir); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| negotiation (two nodes, loopback TCP) ÷ its floor | 2 ms (median of 4) | 1 ms (median of 1) | **2.00× (not met)** | ≤ 1.2 |",
		"| intent gossip to 49 nodes ÷ raw GossipSub | not run |",
		"| negotiation's wait on its audit logs ÷ the floor's durable records | 800 µs (median of 1) | 400 µs (median of 1) | 2.00× |",
		"| honest p99 under an invalid flood ÷ calm | 1.5, 2.5 |  | **2.50× (not met)** | ≤ 2 |",
		"p99 (ms) | 1300 (delivery 1.0000) | raw 1000 (delivery 1.0000) | 1.30× (met) | ≤ 1.3 |",
		"CPU per delivered intent (µs) | 900 | raw 600 | 1.50× (met) | ≤ 1.5 |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if err := run(&out, t.TempDir()); err == nil || !strings.Contains(err.Error(), "no benchmark output") {
		t.Errorf("an empty directory: %v, want an error saying it holds nothing", err)
	}
}
