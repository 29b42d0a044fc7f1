package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vonproject/von/apierr"
	"github.com/vonproject/von/internal/clifmt"

	"github.com/vonproject/von/internal/rpcconn"
	"github.com/vonproject/von/pki"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// dial connects to the manager named by --manager / $VON_MANAGER.
func (g *Global) dial() (vonv1.ReservationServiceClient, func(), error) {
	if g.Manager == "" {
		return nil, nil, usageError(errors.New("no manager: give --manager HOST:PORT or set VON_MANAGER"))
	}
	tls, err := g.Security.Load(nil, pki.KindUser)
	if err != nil {
		return nil, nil, usageError(err)
	}
	conn, err := rpcconn.DialManagers(g.Manager, tls)
	if err != nil {
		return nil, nil, usageError(fmt.Errorf("manager address %q: %w", g.Manager, err))
	}
	return vonv1.NewReservationServiceClient(conn), func() { _ = conn.Close() }, nil
}

// callCtx bounds one unary call.
func callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 90*time.Second)
}

// rpcError turns a gRPC error into a message that says what went wrong and what to do.
func (g *Global) rpcError(err error) error {
	st := status.Convert(err)
	msg := st.Message()
	hint := ""
	switch st.Code() {
	case codes.Unavailable:
		if strings.Contains(msg, "connection refused") || strings.Contains(msg, "no such host") || strings.Contains(msg, "dial") {
			return failure(fmt.Errorf("cannot reach the manager at %s", g.Manager),
				"is von-manager running there? check --manager or $VON_MANAGER")
		}
		hint = "no manager answered as leader; check that one runs and reaches etcd, then try again"
	case codes.ResourceExhausted:
		hint = "ask for less bandwidth, or release an ON you no longer need (vonctl list)"
	case codes.NotFound:
		hint = "vonctl list shows the reservations"
	case codes.AlreadyExists:
		hint = "pick another name, or release the existing one first (vonctl release NAME)"
	case codes.InvalidArgument:
		hint = "see vonctl <command> --help"
	case codes.FailedPrecondition:
		switch {
		case apierr.Is(err, apierr.ErrAgentDown):
			hint = "start the router's agent (von-agent --node NAME --manager ...) or try again"
		case apierr.Is(err, apierr.ErrNoTopology):
			hint = "vonctl topology apply -f FILE"
		}
	case codes.PermissionDenied:
		hint = "ask the owner, or an admin (a certificate from von-manager pki issue --kind user --admin)"
	case codes.Unauthenticated:
		hint = "give --ca, --cert and --key (or VON_CA, VON_CERT, VON_KEY) from the cluster's CA"
	case codes.DeadlineExceeded:
		hint = "the manager did not answer in time; check it is healthy and try again"
	}
	return failure(errors.New(msg), hint)
}

// unary parses -o, connects, and runs one bounded call.
func (g *Global) unary(ctx context.Context, fn func(ctx context.Context, c vonv1.ReservationServiceClient, f clifmt.Format) error) error {
	format, err := g.Format(clifmt.Common...)
	if err != nil {
		return err
	}
	c, closeConn, err := g.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	cctx, cancel := callCtx(ctx)
	defer cancel()
	return fn(cctx, c, format)
}
