// Package discovery owns how a node finds the rest of its mesh. Today that
// is bootstrap addresses: parsing them and keeping the node connected to
// them with backoff. mDNS, the Kademlia DHT, capability rendezvous and
// remembered peers belong here too (an open issue). It does not own the
// host or gossip; package node wires a Bootstrapper to its host.
package discovery
