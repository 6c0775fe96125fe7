// Package simulations runs many real parley nodes in one process over
// go-libp2p's mocknet — scenarios with a topology, link latency and
// bandwidth, a workload of intents and negotiations, churn, partitions and
// hostile peers — and measures them. Run in a testing/synctest bubble (the
// virtual clock), GossipSub, the DHT and the negotiation timers run
// unchanged while time advances only when every goroutine waits, so
// latencies are those of the modelled network, not of the busy machine,
// and the same seed gives the same metrics.
package simulations
