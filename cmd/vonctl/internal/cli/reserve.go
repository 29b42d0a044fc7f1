package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/vonproject/von/internal/clifmt"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/topology"
)

type reserveFlags struct {
	members      string
	rate         string
	redundant    bool
	nodeDisjoint bool
	ttl          time.Duration
	keepalive    bool
}

func newReserveCmd(g *Global) *cobra.Command {
	f := &reserveFlags{}
	cmd := &cobra.Command{
		Use:   "reserve NAME --members h1,h2[,...] --rate RATE",
		Short: "Reserve an overlay network (ON) with guaranteed bandwidth",
		Long: `reserve asks the manager for an ON: a network of the given members whose traffic
gets exactly --rate (bit/s, e.g. 10Mbit) on every link it uses, no more and no less.
The manager picks the paths, charges the rate once per link, and installs a partition
on every router of the paths with a two-phase commit: either all of them have it or
none does.

The reservation is a lease: it ends --ttl after it was made unless renewed (vonctl
renew, or --keepalive, which stays in the foreground and renews until interrupted).
With --redundant every member pair gets two link-disjoint paths (router-disjoint with
--node-disjoint) and senders transmit each packet on both.`,
		Example: `  vonctl reserve video --members h1,h2 --rate 10Mbit
  vonctl reserve backup --members h1,h2,h3 --rate 50Mbit --redundant --ttl 2h -o json
  vonctl reserve demo --members h1,h2 --rate 5Mbit --ttl 30s --keepalive`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error { return runReserve(cmd.Context(), g, args[0], f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.members, "members", "", "comma-separated member hosts (names from the topology)")
	fl.StringVar(&f.rate, "rate", "", "aggregate guaranteed bandwidth, e.g. 10Mbit (bit/s; k, M, G suffixes)")
	fl.BoolVar(&f.redundant, "redundant", false, "two link-disjoint paths per member pair; every packet travels on both")
	fl.BoolVar(&f.nodeDisjoint, "node-disjoint", false, "with --redundant: the two paths share no router either")
	fl.DurationVar(&f.ttl, "ttl", 0, "lease length (default: the manager's, 1h)")
	fl.BoolVar(&f.keepalive, "keepalive", false, "stay in the foreground renewing the lease until interrupted")
	return cmd
}

func runReserve(ctx context.Context, g *Global, name string, f *reserveFlags) error {
	format, err := g.Format(clifmt.Common...)
	if err != nil {
		return err
	}
	var members []string
	for _, m := range strings.Split(f.members, ",") {
		if m = strings.TrimSpace(m); m != "" {
			members = append(members, m)
		}
	}
	if len(members) < 2 {
		return usageError(errors.New("--members needs at least two hosts, e.g. --members h1,h2"))
	}
	if f.rate == "" {
		return usageError(errors.New("--rate is required, e.g. --rate 10Mbit"))
	}
	rate, err := topology.ParseRate(f.rate)
	if err != nil {
		return usageError(fmt.Errorf("--rate: %w", err))
	}
	if rate == 0 {
		return usageError(errors.New("--rate must be positive"))
	}
	if f.ttl < 0 {
		return usageError(errors.New("--ttl must be positive"))
	}
	c, closeConn, err := g.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	req := &vonv1.ReserveRequest{Name: name, Members: members, RateBps: rate, Redundant: f.redundant, NodeDisjoint: f.nodeDisjoint}
	if f.ttl > 0 {
		req.Ttl = durationpb.New(f.ttl)
	}
	cctx, cancel := callCtx(ctx)
	resp, err := c.Reserve(cctx, req)
	cancel()
	if err != nil {
		return g.rpcError(err)
	}
	r := resp.GetReservation()
	if err := writeReservations(g.Stdout, format, []*vonv1.Reservation{r}, true); err != nil {
		return err
	}
	if ne := r.GetNotEnforced(); len(ne) > 0 {
		var where []string
		for _, e := range ne {
			where = append(where, e.GetRouter()+": "+e.GetReason())
		}
		err := fmt.Errorf("%s is committed but NOT enforced on %d router(s): %s", name, len(ne), strings.Join(where, "; "))
		hint := "the manager keeps re-driving it; `vonctl get " + name + "` shows when it is enforced everywhere"
		if !f.keepalive {
			return failure(err, hint)
		}
		fmt.Fprintf(g.Stderr, "vonctl: warning: %v\nhint: %s\n", err, hint)
	}
	if !f.keepalive {
		return nil
	}
	return keepAlive(ctx, g, c, []string{name}, r.GetTtl().AsDuration())
}

// keepAlive renews the leases every third of ttl until ctx ends; then the leases run
// out on their own unless someone else renews them. A broken stream (manager restart,
// failover, network) is re-opened with backoff for as long as the leases last; only
// an answer that a reservation is gone, or a request the manager rejects, ends it.
func keepAlive(ctx context.Context, g *Global, c vonv1.ReservationServiceClient, names []string, ttl time.Duration) error {
	if ttl <= 0 {
		ttl = time.Hour
	}
	every := max(ttl/3, 200*time.Millisecond)
	fmt.Fprintf(g.Stderr, "vonctl: renewing %s every %s; interrupt to stop (the lease then runs out after %s)\n",
		strings.Join(names, ", "), every, ttl)
	leaseEnd := time.Now().Add(ttl) // the earliest lease end last confirmed
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	for {
		stream, err := c.KeepAlive(ctx)
		if err == nil {
			err = keepAliveStream(ctx, g, stream, names, ttl, every, func(end time.Time) {
				leaseEnd, backoff = end, minBackoff
			})
		}
		if ctx.Err() != nil {
			return nil
		}
		if !retryable(err) {
			if e := (*exitError)(nil); errors.As(err, &e) {
				return err
			}
			return g.rpcError(err)
		}
		if !time.Now().Before(leaseEnd) {
			return failure(fmt.Errorf("the lease of %s ran out while the manager could not be reached: %v",
				strings.Join(names, ", "), status.Convert(err).Message()), "reserve it again once the manager is back")
		}
		fmt.Fprintf(g.Stderr, "vonctl: keepalive interrupted (%s); retrying (lease until %s)\n",
			status.Convert(err).Message(), leaseEnd.Format(time.TimeOnly))
		wait := min(backoff, time.Until(leaseEnd), every)
		backoff = min(2*backoff, 2*time.Second)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// retryable says whether a keepalive stream error is worth another stream:
// transport and availability errors are, a rejected request is not.
func retryable(err error) bool {
	if e := (*exitError)(nil); errors.As(err, &e) {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Aborted, codes.Internal, codes.Unknown:
		return true
	}
	return false
}

// keepAliveStream renews on one stream until it breaks (the gRPC error is
// returned as it is) or a reservation is gone (a *cliError).
func keepAliveStream(ctx context.Context, g *Global, stream vonv1.ReservationService_KeepAliveClient, names []string, ttl, every time.Duration,
	renewed func(leaseEnd time.Time)) error {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := stream.Send(&vonv1.KeepAliveRequest{Names: names, Ttl: durationpb.New(ttl)}); err != nil {
			_, err = stream.Recv() // Send reports io.EOF; Recv has the real error
			return err
		}
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		var end time.Time
		for _, r := range resp.GetRenewals() {
			if r.GetError() != "" {
				return failure(fmt.Errorf("renewing %s: %s", r.GetName(), r.GetError()), "the reservation is gone; reserve it again")
			}
			if e := r.GetLeaseExpireTime().AsTime(); end.IsZero() || e.Before(end) {
				end = e
			}
		}
		renewed(end)
		select {
		case <-ctx.Done():
			_ = stream.CloseSend()
			return nil
		case <-t.C:
		}
	}
}
