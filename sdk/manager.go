package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vonproject/von/apierr"
	"github.com/vonproject/von/internal/rpcconn"
	"github.com/vonproject/von/pki"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// managerClient is the SDK's side of ReservationService. The gRPC connection
// reconnects by itself after a manager restart; calls fail fast while it is down.
type managerClient struct {
	conn *grpc.ClientConn
	rs   vonv1.ReservationServiceClient
}

func dialManager(addr string, tls *pki.Material) (*managerClient, error) {
	conn, err := rpcconn.DialManagers(addr, tls)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrManager, addr, err)
	}
	return &managerClient{conn: conn, rs: vonv1.NewReservationServiceClient(conn)}, nil
}

func (c *managerClient) close() { _ = c.conn.Close() }

// managerError turns a gRPC status from the manager into the SDK's sentinel errors.
func managerError(what string, err error) error {
	if err == nil {
		return nil
	}
	st, _ := status.FromError(err)
	var sentinel error
	switch {
	case apierr.Is(err, apierr.ErrNotFound):
		sentinel = ErrNoSuchON
	case apierr.Is(err, apierr.ErrNotCommitted):
		sentinel = ErrNotCommitted
	case apierr.Is(err, apierr.ErrNotMember):
		sentinel = ErrNotMember
	case apierr.Is(err, apierr.ErrPermission), st.Code() == codes.Unauthenticated:
		sentinel = ErrPermission
	case st.Code() == codes.InvalidArgument:
		sentinel = ErrCredential
	case st.Code() == codes.Canceled:
		return context.Canceled
	case st.Code() == codes.DeadlineExceeded:
		return fmt.Errorf("%w: %s: %w", ErrManager, what, context.DeadlineExceeded)
	default:
		sentinel = ErrManager
	}
	return fmt.Errorf("%w: %s: %s", sentinel, what, st.Message())
}

// reservation fetches the ON and checks it can be joined as member.
func (c *managerClient) reservation(ctx context.Context, name, member string) (*vonv1.Reservation, *vonv1.Member, error) {
	resp, err := c.rs.Get(ctx, &vonv1.GetRequest{Name: name})
	if err != nil {
		return nil, nil, managerError("get "+name, err)
	}
	r := resp.GetReservation()
	if r.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
		return nil, nil, fmt.Errorf("%w: %s is %s", ErrNotCommitted, name, r.GetState())
	}
	for _, m := range r.GetMembers() {
		if m.GetName() == member {
			return r, m, nil
		}
	}
	return nil, nil, fmt.Errorf("%w: %s is not one of %s's members", ErrNotMember, member, name)
}

// keepAlive renews the ON's lease every interval until ctx ends, over a KeepAlive
// stream that is re-opened (with backoff) whenever it breaks. lost is called, and
// renewing stops, only when the manager says the reservation has ended or does not
// exist; any other failure (a manager not leading yet, etcd briefly away) is logged
// and retried.
func (c *managerClient) keepAlive(ctx context.Context, name string, every time.Duration, log *slog.Logger, lost func(error)) {
	const minBackoff = 200 * time.Millisecond
	backoff := minBackoff
	for ctx.Err() == nil {
		ok, err := c.keepAliveStream(ctx, name, every, log, lost)
		if ctx.Err() != nil || errors.Is(err, errLeaseGone) {
			return
		}
		if ok {
			backoff = minBackoff
		}
		log.Warn("lease keepalive interrupted; retrying", "on", name, "err", err)
		d := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, every)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

var errLeaseGone = errors.New("lease gone")

// renewTimeout bounds one renewal's answer.
const renewTimeout = 10 * time.Second

func (c *managerClient) keepAliveStream(ctx context.Context, name string, every time.Duration, log *slog.Logger, lost func(error)) (renewed bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.rs.KeepAlive(sctx)
	if err != nil {
		return false, err
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := st.Send(&vonv1.KeepAliveRequest{Names: []string{name}}); err != nil {
			return renewed, err
		}
		timer := time.AfterFunc(renewTimeout, cancel)
		resp, err := st.Recv()
		timer.Stop()
		if err != nil {
			return renewed, err
		}
		for _, r := range resp.GetRenewals() {
			if r.GetError() == "" {
				renewed = true
				continue
			}
			if c.ended(ctx, name, r.GetState()) {
				lost(fmt.Errorf("%w: renewing %s: %s", ErrNotCommitted, name, r.GetError()))
				return renewed, errLeaseGone
			}
			log.Warn("lease renewal refused; retrying", "on", name, "state", r.GetState().String(), "err", r.GetError())
		}
		select {
		case <-ctx.Done():
			return renewed, ctx.Err()
		case <-t.C:
		}
	}
}

// ended says whether a failed renewal means the reservation is over for good.
func (c *managerClient) ended(ctx context.Context, name string, s vonv1.ReservationState) bool {
	switch s {
	case vonv1.ReservationState_RESERVATION_STATE_RELEASING, vonv1.ReservationState_RESERVATION_STATE_RELEASED,
		vonv1.ReservationState_RESERVATION_STATE_EXPIRED, vonv1.ReservationState_RESERVATION_STATE_FAILED:
		return true
	case vonv1.ReservationState_RESERVATION_STATE_UNSPECIFIED:
		gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		_, err := c.rs.Get(gctx, &vonv1.GetRequest{Name: name})
		return status.Code(err) == codes.NotFound
	}
	return false
}
