// Package simulations will own many parley nodes in one process over
// go-libp2p's mocknet: network models, scenarios, faults, metrics and
// reports (an open issue). It is empty until then; node/nodetest already
// builds mocknet meshes for tests and benchmarks.
package simulations
