package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vonproject/von/internal/clifmt"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

type agentView struct {
	Node       string          `json:"node"`
	Endpoint   string          `json:"endpoint"`
	Live       bool            `json:"live"`
	LastSeen   *time.Time      `json:"last_seen,omitempty"`
	Version    string          `json:"version,omitempty"`
	Interfaces []interfaceView `json:"interfaces"`
}

type interfaceView struct {
	Name      string   `json:"name"`
	Addresses []string `json:"addresses"`
	Up        bool     `json:"up"`
	Managed   bool     `json:"managed"`
}

func newAgentsCmd(g *Global) *cobra.Command {
	return &cobra.Command{
		Use:     "agents",
		Short:   "List the router agents registered with the manager",
		Long:    "agents lists every router whose von-agent has registered, whether it is live (registered recently), and its interfaces.",
		Example: "  vonctl agents\n  vonctl agents -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.unary(cmd.Context(), func(ctx context.Context, c vonv1.ReservationServiceClient, format clifmt.Format) error {
				resp, err := c.ListAgents(ctx, &vonv1.ListAgentsRequest{})
				if err != nil {
					return g.rpcError(err)
				}
				views := []agentView{}
				for _, a := range resp.GetAgents() {
					v := agentView{Node: a.GetNode(), Endpoint: a.GetEndpoint(), Live: a.GetLive(), Version: a.GetVersion(), Interfaces: []interfaceView{}}
					if a.GetLastSeenTime() != nil {
						t := a.GetLastSeenTime().AsTime().Local()
						v.LastSeen = &t
					}
					for _, in := range a.GetInterfaces() {
						v.Interfaces = append(v.Interfaces, interfaceView{in.GetName(), in.GetAddresses(), in.GetUp(), in.GetManaged()})
					}
					views = append(views, v)
				}
				if format != clifmt.Table {
					return clifmt.Write(g.Stdout, format, views)
				}
				tw := clifmt.NewTable(g.Stdout)
				fmt.Fprintln(tw, "NODE\tLIVE\tLAST-SEEN\tENDPOINT\tINTERFACES")
				for _, v := range views {
					seen := "-"
					if v.LastSeen != nil {
						seen = time.Since(*v.LastSeen).Round(time.Second).String() + " ago"
					}
					var ifs []string
					for _, in := range v.Interfaces {
						ifs = append(ifs, in.Name)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.Node, yesNo(v.Live), seen, v.Endpoint, strings.Join(ifs, ","))
				}
				return tw.Flush()
			})
		},
	}
}
