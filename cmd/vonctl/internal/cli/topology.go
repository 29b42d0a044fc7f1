package cli

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/vonproject/von/internal/clifmt"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

func newTopologyCmd(g *Global) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "topology",
		Short: "Apply or show the manager's network model",
	}
	var file string
	apply := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Validate a topology file and make it the manager's network model",
		Long: `apply checks the file locally (errors name the line) and sends it to the manager,
which refuses it if it would strand a live reservation (a link it uses removed or
shrunk below what is reserved).`,
		Example: "  vonctl topology apply -f topo.yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := g.Format(clifmt.Common...)
			if err != nil {
				return err
			}
			if file == "" {
				return usageError(errors.New("-f FILE is required"))
			}
			data, err := os.ReadFile(file)
			if err != nil {
				return failure(err, "")
			}
			if _, err := topology.Parse(data); err != nil {
				var ve *topology.ValidationError
				if errors.As(err, &ve) {
					ve.File = file
				}
				return failure(err, "fix the file and apply it again")
			}
			c, closeConn, err := g.dial()
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := callCtx(cmd.Context())
			defer cancel()
			resp, err := c.ApplyTopology(ctx, &vonv1.ApplyTopologyRequest{Source: &vonv1.ApplyTopologyRequest_Yaml{Yaml: string(data)}})
			if err != nil {
				return g.rpcError(err)
			}
			if format != clifmt.Table {
				return clifmt.Write(g.Stdout, format, topologyView(resp.GetTopology(), resp.GetRevision()))
			}
			fmt.Fprintf(g.Stdout, "topology applied: %d nodes, %d links (revision %d)\n",
				len(resp.GetTopology().GetNodes()), len(resp.GetTopology().GetLinks()), resp.GetRevision())
			return nil
		},
	}
	apply.Flags().StringVarP(&file, "file", "f", "", "topology file (YAML, docs/topology.md)")
	show := &cobra.Command{
		Use:     "show",
		Short:   "Show the manager's network model",
		Example: "  vonctl topology show\n  vonctl topology show -o yaml",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.unary(cmd.Context(), func(ctx context.Context, c vonv1.ReservationServiceClient, format clifmt.Format) error {
				resp, err := c.GetTopology(ctx, &vonv1.GetTopologyRequest{})
				if err != nil {
					return g.rpcError(err)
				}
				if format != clifmt.Table {
					return clifmt.Write(g.Stdout, format, topologyView(resp.GetTopology(), resp.GetRevision()))
				}
				tw := clifmt.NewTable(g.Stdout)
				fmt.Fprintln(tw, "NODE\tKIND\tADDRESS")
				for _, n := range resp.GetTopology().GetNodes() {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", n.GetName(), kindText(n.GetKind()), dash(n.GetAddress()))
				}
				fmt.Fprintln(tw, "\nLINK\tA\tB\tCAPACITY\tRESERVABLE\tCOST\tSRLG")
				for _, l := range resp.GetTopology().GetLinks() {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.2f\t%d\t%v\n", l.GetName(), end(l.GetA()), end(l.GetB()),
						topology.FormatRate(l.GetCapacityBps()), l.GetReservable(), l.GetCost(), l.GetSrlg())
				}
				return tw.Flush()
			})
		},
	}
	cmd.AddCommand(apply, show)
	return cmd
}

type topoNodeView struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Address string `json:"address,omitempty"`
}

type topoLinkView struct {
	Name       string   `json:"name"`
	A          string   `json:"a"`
	B          string   `json:"b"`
	Capacity   string   `json:"capacity"`
	Reservable float64  `json:"reservable"`
	Cost       uint32   `json:"cost"`
	SRLG       []string `json:"srlg,omitempty"`
}

func topologyView(t *vonv1.Topology, rev uint64) any {
	v := struct {
		Revision uint64         `json:"revision"`
		Nodes    []topoNodeView `json:"nodes"`
		Links    []topoLinkView `json:"links"`
	}{Revision: rev}
	for _, n := range t.GetNodes() {
		v.Nodes = append(v.Nodes, topoNodeView{n.GetName(), kindText(n.GetKind()), n.GetAddress()})
	}
	for _, l := range t.GetLinks() {
		v.Links = append(v.Links, topoLinkView{l.GetName(), end(l.GetA()), end(l.GetB()), topology.FormatRate(l.GetCapacityBps()),
			l.GetReservable(), l.GetCost(), l.GetSrlg()})
	}
	return v
}

func kindText(k vonv1.NodeKind) string {
	if k == vonv1.NodeKind_NODE_KIND_HOST {
		return "host"
	}
	return "router"
}

func end(e *vonv1.LinkEnd) string {
	if e.GetInterface() == "" {
		return e.GetNode()
	}
	return e.GetNode() + ":" + e.GetInterface()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
