package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/vonproject/von/internal/clifmt"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

func newListCmd(g *Global) *cobra.Command {
	var states string
	cmd := &cobra.Command{
		Use:     "list",
		Short:   "List reservations",
		Long:    "list shows every reservation the manager knows, including ones that recently ended (released, expired, failed).",
		Example: "  vonctl list\n  vonctl list --state committed -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			format, err := g.Format(clifmt.Common...)
			if err != nil {
				return err
			}
			req := &vonv1.ListRequest{}
			for _, s := range strings.Split(states, ",") {
				if s = strings.TrimSpace(s); s == "" {
					continue
				}
				v, ok := vonv1.ReservationState_value["RESERVATION_STATE_"+strings.ToUpper(s)]
				if !ok || v == 0 {
					return usageError(fmt.Errorf("--state %q: want preparing, committed, releasing, released, expired or failed", s))
				}
				req.States = append(req.States, vonv1.ReservationState(v))
			}
			c, closeConn, err := g.dial()
			if err != nil {
				return err
			}
			defer closeConn()
			var all []*vonv1.Reservation
			for {
				ctx, cancel := callCtx(cmd.Context())
				resp, err := c.List(ctx, req)
				cancel()
				if err != nil {
					return g.rpcError(err)
				}
				all = append(all, resp.GetReservations()...)
				if resp.GetNextPageToken() == "" {
					break
				}
				req.PageToken = resp.GetNextPageToken()
			}
			return writeReservations(g.Stdout, format, all, false)
		},
	}
	cmd.Flags().StringVar(&states, "state", "", "only these states (comma-separated)")
	return cmd
}

func newGetCmd(g *Global) *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show one reservation: ON id, state, lease, links and paths",
		Example: `  vonctl get video
  vonctl get video -o json | jq .on_id`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.unary(cmd.Context(), func(ctx context.Context, c vonv1.ReservationServiceClient, format clifmt.Format) error {
				resp, err := c.Get(ctx, &vonv1.GetRequest{Name: args[0]})
				if err != nil {
					return g.rpcError(err)
				}
				return writeReservations(g.Stdout, format, []*vonv1.Reservation{resp.GetReservation()}, true)
			})
		},
	}
}

func newWatchCmd(g *Global) *cobra.Command {
	return &cobra.Command{
		Use:   "watch [NAME...]",
		Short: "Stream reservation changes",
		Long: `watch prints the current reservations, then every change as it happens, until
interrupted. With -o json or yaml each event is one document (json: one per line).`,
		Example: "  vonctl watch\n  vonctl watch video -o json",
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := g.Format(clifmt.Common...)
			if err != nil {
				return err
			}
			c, closeConn, err := g.dial()
			if err != nil {
				return err
			}
			defer closeConn()
			stream, err := c.Watch(cmd.Context(), &vonv1.WatchRequest{Names: args})
			if err != nil {
				return g.rpcError(err)
			}
			tw := clifmt.NewTable(g.Stdout)
			if format == clifmt.Table {
				fmt.Fprintln(tw, "TIME\tEVENT\tNAME\tON-ID\tSTATE\tRATE\tMEMBERS")
				_ = tw.Flush()
			}
			for {
				ev, err := stream.Recv()
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil
					}
					return g.rpcError(err)
				}
				typ := strings.ToLower(strings.TrimPrefix(ev.GetType().String(), "RESERVATION_EVENT_TYPE_"))
				r := ev.GetReservation()
				switch format {
				case clifmt.Table:
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", time.Now().Format("15:04:05"), typ, r.GetName(), r.GetOnId(),
						stateText(r.GetState()), topology.FormatRate(r.GetRateBps()), memberNames(r))
					_ = tw.Flush()
				case clifmt.JSON:
					b, _ := json.Marshal(struct {
						Event       string          `json:"event"`
						Reservation reservationView `json:"reservation"`
					}{typ, viewOf(r)})
					fmt.Fprintln(g.Stdout, string(b))
				default:
					fmt.Fprintln(g.Stdout, "---")
					if err := clifmt.WriteYAML(g.Stdout, map[string]any{"event": typ, "reservation": viewOf(r)}); err != nil {
						return err
					}
				}
			}
		},
	}
}
