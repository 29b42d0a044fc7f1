package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vonproject/von/internal/clifmt"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

func newRenewCmd(g *Global) *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:     "renew NAME",
		Short:   "Extend a reservation's lease",
		Long:    "renew extends the lease of a committed reservation to --ttl from now (default: its own ttl).",
		Example: "  vonctl renew video\n  vonctl renew video --ttl 4h",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := &vonv1.RenewRequest{Name: args[0]}
			if ttl > 0 {
				req.Ttl = durationpb.New(ttl)
			}
			return g.unary(cmd.Context(), func(ctx context.Context, c vonv1.ReservationServiceClient, format clifmt.Format) error {
				resp, err := c.Renew(ctx, req)
				if err != nil {
					return g.rpcError(err)
				}
				return writeReservations(g.Stdout, format, []*vonv1.Reservation{resp.GetReservation()}, true)
			})
		},
	}
	cmd.Flags().DurationVar(&ttl, "ttl", 0, "new lease length from now (default: the reservation's ttl)")
	return cmd
}

func newReleaseCmd(g *Global) *cobra.Command {
	return &cobra.Command{
		Use:   "release NAME",
		Short: "Release a reservation everywhere",
		Long: `release removes the ON's partition from every router of its paths and frees its
bandwidth and id. Releasing a reservation that has already ended does nothing.`,
		Example: "  vonctl release video",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.unary(cmd.Context(), func(ctx context.Context, c vonv1.ReservationServiceClient, format clifmt.Format) error {
				resp, err := c.Release(ctx, &vonv1.ReleaseRequest{Name: args[0]})
				if err != nil {
					return g.rpcError(err)
				}
				return writeReservations(g.Stdout, format, []*vonv1.Reservation{resp.GetReservation()}, true)
			})
		},
	}
}
