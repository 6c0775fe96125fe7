package node

// reach counts the peers a call on capability would reach now (on its
// topic, with a GossipSub stream open), so that a call no one heard fails
// saying so rather than "no bids".
func (n *Node) reach(capability string) int {
	t, err := n.topic(capability)
	if err != nil {
		return 0
	}
	count := 0
	for _, p := range t.ListPeers() {
		if n.router.canSend(p) {
			count++
		}
	}
	return count
}
