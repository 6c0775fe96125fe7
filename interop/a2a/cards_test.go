package a2a_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/a2aproject/a2a-go/v2/a2a"
	"github.com/a2aproject/a2a-go/v2/a2aclient/agentcard"

	parleya2a "github.com/parleynet/parley/interop/a2a"
)

// The gateway's card lists a skill per capability of this node's agents
// and per exported one; each hosted agent has its own card under a
// stable path; cards need no token (what an A2A client fetches first).
func TestGatewayCards(t *testing.T) {
	gm := newGatewayMesh(t, func(c *parleya2a.Config) {
		c.Export = []string{"quote", "translate.fr"}
		c.Agents = func() []parleya2a.HostedAgent {
			return []parleya2a.HostedAgent{{Name: "default"}, {Name: "pricer", Capabilities: []string{"quote", "slow"}}}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ids := func(c *a2a.AgentCard) []string {
		var out []string
		for _, s := range c.Skills {
			out = append(out, s.ID)
		}
		return out
	}
	card, err := agentcard.DefaultResolver.Resolve(ctx, gm.url)
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(card); !slices.Equal(got, []string{"quote", "slow", "translate.fr"}) {
		t.Errorf("gateway skills %v, want the agents' and the exported capabilities once each", got)
	}
	want := []*a2a.AgentInterface{
		a2a.NewAgentInterface(gm.url+parleya2a.JSONRPCPath, a2a.TransportProtocolJSONRPC),
		a2a.NewAgentInterface(gm.url+parleya2a.RESTPath, a2a.TransportProtocolHTTPJSON),
	}
	for i, w := range want {
		if i >= len(card.SupportedInterfaces) || card.SupportedInterfaces[i].URL != w.URL || card.SupportedInterfaces[i].ProtocolBinding != w.ProtocolBinding {
			t.Errorf("interfaces %+v, want %s at %s", card.SupportedInterfaces, w.ProtocolBinding, w.URL)
		}
	}
	pc, err := agentcard.DefaultResolver.Resolve(ctx, gm.url, agentcard.WithPath("/agents/pricer/agent-card.json"))
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(pc); pc.Name != "parley/pricer" || !slices.Equal(got, []string{"quote", "slow"}) {
		t.Errorf("pricer's card: %q with %v", pc.Name, got)
	}
	for _, name := range []string{"default", "nobody"} {
		resp, err := http.Get(gm.url + "/agents/" + name + "/agent-card.json")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("card of %s (offers nothing here): HTTP %d, want 404", name, resp.StatusCode)
		}
	}
}
