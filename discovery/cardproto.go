package discovery

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio"
)

// CardProtocolID is the protocol on which a node serves the signed cards
// of the agents it hosts.
const CardProtocolID = "/parley/card/1.0.0"

// MaxCardResponse caps a card protocol response.
const MaxCardResponse = 256 << 10

// cardRequest asks for the cards that offer a capability ("" for all).
type cardRequest struct {
	Capability string `json:"capability"`
}

// cardResponse carries signed cards as envelope bytes.
type cardResponse struct {
	Cards [][]byte `json:"cards"`
}

// serveCards answers one card request with the cards cards() returns.
func serveCards(s network.Stream, cards func(capability string) [][]byte) {
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	r := msgio.NewVarintReaderSize(s, 4<<10)
	msg, err := r.ReadMsg()
	if err != nil {
		_ = s.Reset()
		return
	}
	var req cardRequest
	err = json.Unmarshal(msg, &req)
	r.ReleaseMsg(msg)
	if err != nil {
		_ = s.Reset()
		return
	}
	resp, err := json.Marshal(cardResponse{Cards: cards(req.Capability)})
	if err != nil || len(resp) > MaxCardResponse {
		_ = s.Reset()
		return
	}
	_ = msgio.NewVarintWriter(s).WriteMsg(resp)
}

// FetchCards asks peer p for the signed cards of its agents that offer
// capability. The cards are returned as received; the caller verifies them.
func FetchCards(ctx context.Context, h host.Host, p peer.ID, capability string) ([][]byte, error) {
	s, err := h.NewStream(network.WithAllowLimitedConn(ctx, "parley card"), p, CardProtocolID) // a relayed peer too
	if err != nil {
		return nil, fmt.Errorf("card protocol to %s: %w", p, err)
	}
	defer s.Close()
	if d, ok := ctx.Deadline(); ok {
		_ = s.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = s.Reset() })
	defer stop()
	req, _ := json.Marshal(cardRequest{Capability: capability})
	if err := msgio.NewVarintWriter(s).WriteMsg(req); err != nil {
		return nil, fmt.Errorf("card request to %s: %w", p, err)
	}
	msg, err := msgio.NewVarintReaderSize(s, MaxCardResponse).ReadMsg()
	if err != nil {
		return nil, fmt.Errorf("%w: card response from %s: %v", ErrBadCard, p, err)
	}
	var resp cardResponse
	if err := json.Unmarshal(msg, &resp); err != nil {
		return nil, fmt.Errorf("%w: card response from %s: %v", ErrBadCard, p, err)
	}
	return resp.Cards, nil
}
