package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/parleynet/parley/daemon/home"
	"github.com/parleynet/parley/intent"
	"github.com/parleynet/parley/node/api"
)

// errNoDaemon is what every client command says when the home has no
// running daemon.
func (c *cli) errNoDaemon() error {
	return fmt.Errorf("no daemon running for home %s (start one with: parley run --home %s)", c.home, c.home)
}

// client returns a client of the daemon running for the home.
func (c *cli) client() (*api.Client, error) {
	url, token, err := home.ReadAPI(c.home)
	if errors.Is(err, home.ErrNoAPIFile) {
		return nil, c.errNoDaemon()
	}
	if err != nil {
		return nil, err
	}
	return api.NewClient(url, token), nil
}

// apiErr makes an error from the daemon's API readable.
func (c *cli) apiErr(err error) error {
	var ae *api.Error
	switch {
	case errors.Is(err, api.ErrNoDaemon):
		return c.errNoDaemon()
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
		return fmt.Errorf("the daemon refused the token in %s: %s", home.TokenFile, ae.Message)
	case errors.As(err, &ae) && ae.Status == http.StatusForbidden:
		return fmt.Errorf("the daemon refused: %s", ae.Message)
	}
	return err
}

// runningDaemon reports whether a daemon answers for the home.
func (c *cli) runningDaemon(ctx context.Context) (string, bool) {
	url, token, err := home.ReadAPI(c.home)
	if err != nil {
		return "", false
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = api.NewClient(url, token).Node(ctx)
	var ae *api.Error // the daemon answered, if only to refuse
	return url, err == nil || errors.As(err, &ae)
}

func (c *cli) printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.out, "%s\n", b)
	return err
}

// idOutput is what 'parley id --json' prints.
type idOutput struct {
	api.NodeInfo
	Online bool   `json:"online"`        // from a running daemon, else read from the home's keys
	API    string `json:"api,omitempty"` // the daemon's API URL when online
	// Capabilities are what each agent offers, by name.
	Capabilities map[string][]string `json:"capabilities"`
}

func (c *cli) idCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "id",
		Short: "Print the node's PeerID, agents and addresses",
		Long: `id asks the running daemon for the node's PeerID, agents (with what each
offers) and listen addresses; give another node one of those addresses, as it
is, to join this one (--bootstrap). With no daemon running it reads the
identities from the home's keys and config.yaml and says it is offline.`,
		Example: `  parley id
  parley run --bootstrap "$(parley --home node-a id --json | jq -r '.addrs[0]')"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out, err := c.id(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return c.printJSON(out)
			}
			var b strings.Builder
			fmt.Fprintf(&b, "peer: %s\n", out.Peer)
			for _, a := range out.Agents {
				fmt.Fprintf(&b, "agent: %s %s", a.Name, a.ID)
				if caps := out.Capabilities[a.Name]; len(caps) > 0 {
					fmt.Fprintf(&b, " offers %s", strings.Join(caps, ", "))
				}
				b.WriteString("\n")
			}
			for _, a := range out.Addrs {
				fmt.Fprintf(&b, "listen: %s\n", a)
			}
			if out.Online {
				fmt.Fprintf(&b, "api: %s\n", out.API)
			} else {
				fmt.Fprintf(&b, "status: offline (no daemon running for home %s; identities read from its keys)\n", c.home)
			}
			_, err = fmt.Fprint(c.out, b.String())
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func (c *cli) id(ctx context.Context) (*idOutput, error) {
	url, token, err := home.ReadAPI(c.home)
	if err == nil {
		cl := api.NewClient(url, token)
		info, err := cl.Node(ctx)
		if err == nil {
			out := &idOutput{NodeInfo: *info, Online: true, API: url, Capabilities: map[string][]string{}}
			hosted, err := cl.Agents(ctx)
			if err != nil {
				return nil, c.apiErr(err)
			}
			for _, a := range hosted {
				out.Capabilities[a.Name] = a.Capabilities
			}
			return out, nil
		}
		if !errors.Is(err, api.ErrNoDaemon) {
			return nil, c.apiErr(err)
		}
	} else if !errors.Is(err, home.ErrNoAPIFile) {
		return nil, err
	}
	h, err := home.Open(c.home)
	if err != nil {
		return nil, err
	}
	out := &idOutput{NodeInfo: api.NodeInfo{Peer: h.PeerID(), Addrs: []string{}, Version: version()}, Capabilities: map[string][]string{}}
	for _, a := range h.Agents {
		out.Agents = append(out.Agents, api.AgentInfo{Name: a.Name, ID: a.ID})
	}
	for _, a := range h.Config.Agents {
		out.Capabilities[a.Name] = a.Capabilities
	}
	return out, nil
}

func (c *cli) peersCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "peers",
		Short: "List the peers the running daemon is connected to",
		Long: `peers lists the nodes the running daemon is connected to: PeerID, how it was
found (bootstrap, mdns, dht, remembered, inbound: it dialled us, or direct),
the connection's direction, whether it is direct (and made by hole
punching) or relayed (through which relay), and the peer's addresses.`,
		Example: `  parley peers
  parley peers --json | jq length`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.client()
			if err != nil {
				return err
			}
			peers, err := cl.Peers(cmd.Context())
			if err != nil {
				return c.apiErr(err)
			}
			if asJSON {
				return c.printJSON(peers)
			}
			if len(peers) == 0 {
				fmt.Fprintln(os.Stderr, "no peers connected")
				return nil
			}
			// SOURCE says how the peer was found: bootstrap, mdns, dht,
			// remembered, inbound (it dialled us) or direct.
			tw := tabwriter.NewWriter(c.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "PEER\tSOURCE\tDIRECTION\tCONNECTION\tADDRS")
			for _, p := range peers {
				conn := p.Connection
				switch {
				case p.Via != "":
					conn += " via …" + p.Via.String()[max(0, len(p.Via.String())-8):]
				case p.HolePunched:
					conn += " (hole punched)"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.ID, p.Source, p.Direction, conn, strings.Join(p.Addrs, ","))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

type publishFlags struct {
	capability, payload, agent, kind, ttl string
	asJSON                                bool
}

func (c *cli) publishCmd() *cobra.Command {
	var f publishFlags
	cmd := &cobra.Command{
		Use:   "publish --capability C --payload JSON",
		Short: "Publish a signed intent through the running daemon",
		Long: `publish has the running daemon sign an intent as one of its agents and
gossip it on the capability's topic. The payload is any JSON value; keep it
small, it goes to every subscriber.`,
		Example: `  parley publish --capability weather --payload '{"city":"Oslo"}'
  parley publish --capability weather --payload @alert.json --ttl 30s`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := f.request(cmd.InOrStdin())
			if err != nil {
				return err
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			in, err := cl.Publish(cmd.Context(), req)
			var ae *api.Error
			if errors.As(err, &ae) && ae.Status == http.StatusBadRequest && strings.HasPrefix(ae.Message, "ttl ") {
				return fmt.Errorf("--%s", ae.Message)
			}
			if err != nil {
				return c.apiErr(err)
			}
			if f.asJSON {
				return c.printJSON(in)
			}
			_, err = fmt.Fprintf(c.out, "published %s on %s as %s\n", in.ID, in.Capability, in.From)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.capability, "capability", "", "capability (topic) to publish on (required)")
	fl.StringVar(&f.payload, "payload", "", "the intent's payload, a JSON value, @FILE or - for stdin (required)")
	fl.StringVar(&f.agent, "agent", "", "hosted agent that signs the intent (default: the default agent)")
	fl.StringVar(&f.kind, "kind", string(intent.KindEvent), "intent kind: task, offer or event")
	fl.StringVar(&f.ttl, "ttl", "", "how long the intent stays valid, e.g. 30s (default: the node's intent_ttl)")
	fl.BoolVar(&f.asJSON, "json", false, "print the published intent as JSON")
	_ = cmd.MarkFlagRequired("capability")
	_ = cmd.MarkFlagRequired("payload")
	_ = cmd.RegisterFlagCompletionFunc("capability", c.flagCompletion(capabilities))
	_ = cmd.RegisterFlagCompletionFunc("agent", c.flagCompletion(agentsWhere()))
	_ = cmd.RegisterFlagCompletionFunc("kind", cobra.FixedCompletions([]string{"event", "offer", "task"}, cobra.ShellCompDirectiveNoFileComp))
	return cmd
}

// request checks the flags locally, before anything is sent.
func (f *publishFlags) request(stdin io.Reader) (api.PublishRequest, error) {
	if err := intent.ValidCapability(f.capability); err != nil {
		return api.PublishRequest{}, fmt.Errorf("--capability: %w", err)
	}
	payload, err := jsonArg("--payload", f.payload, stdin)
	if err != nil {
		return api.PublishRequest{}, err
	}
	if k := intent.Kind(f.kind); !k.Valid() {
		return api.PublishRequest{}, fmt.Errorf("--kind %q: want task, offer or event", f.kind)
	}
	if f.ttl != "" {
		// The daemon refuses a TTL above its limits.intent_ttl.
		if d, err := time.ParseDuration(f.ttl); err != nil || d <= 0 {
			return api.PublishRequest{}, fmt.Errorf("--ttl %q: want a positive duration such as 30s", f.ttl)
		}
	}
	return api.PublishRequest{
		Capability: f.capability,
		Kind:       intent.Kind(f.kind),
		Payload:    payload,
		Agent:      f.agent,
		TTL:        f.ttl,
	}, nil
}

// abbrev quotes s, shortened for an error message.
func abbrev(s string) string {
	if len(s) > 60 {
		return fmt.Sprintf("%q...", s[:60])
	}
	return fmt.Sprintf("%q", s)
}

func (c *cli) subscribeCmd() *cobra.Command {
	var (
		capability string
		asJSON     bool
	)
	cmd := &cobra.Command{
		Use:   "subscribe --capability C",
		Short: "Print the verified intents the running daemon receives on a capability",
		Long: `subscribe prints, one line each, the intents on a capability's topic that the
running daemon has verified (signature, signer, expiry, replay, size), until
it is interrupted. With --json each line is the intent as JSON, with its id,
from (the AgentID), kind, capability and payload.`,
		Example: `  parley subscribe --capability weather
  parley subscribe --capability weather --json | jq -c .payload`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := intent.ValidCapability(capability); err != nil {
				return fmt.Errorf("--capability: %w", err)
			}
			cl, err := c.client()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			err = cl.Subscribe(ctx, capability, func(in *intent.Intent) error {
				if asJSON {
					return c.printJSON(in)
				}
				_, err := fmt.Fprintf(c.out, "%s %s %s %s %s\n",
					in.Created.Format(time.RFC3339), in.From, in.Kind, in.Capability, in.Payload)
				return err
			})
			switch {
			case ctx.Err() != nil: // interrupted: a normal end
				return nil
			case errors.Is(err, api.ErrStreamClosed):
				return fmt.Errorf("the daemon for home %s ended the subscription (did it stop?)", c.home)
			}
			return c.apiErr(err)
		},
	}
	cmd.Flags().StringVar(&capability, "capability", "", "capability (topic) to subscribe to (required)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line")
	_ = cmd.MarkFlagRequired("capability")
	return cmd
}
