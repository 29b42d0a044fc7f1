// Package rpcconn dials and serves the project's gRPC services (manager and
// agents) with the settings every connection needs: mutual TLS (package pki)
// or explicit plaintext, reconnecting within a second of a restart, and — for
// a list of managers — spreading calls over them and retrying the next one
// when a manager is down or does not lead.
package rpcconn

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"

	"github.com/vonproject/von/apierr"
	"github.com/vonproject/von/pki"
)

// Backoff is the reconnect backoff of every connection: gRPC's default grows
// to two minutes, longer than many leases, so a restarted manager or agent
// would stay unreached long after it is back.
var Backoff = grpc.ConnectParams{
	Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
	MinConnectTimeout: 2 * time.Second,
}

// serviceConfig spreads calls over the listed servers and retries a call that
// failed UNAVAILABLE (the server is down, or is a manager that does not lead)
// on the next one: every call of the VON API may be repeated (a reservation is
// named, a release or renewal of one twice is a no-op).
const serviceConfig = `{
  "loadBalancingConfig": [{"round_robin": {}}],
  "methodConfig": [{
    "name": [{}],
    "retryPolicy": {
      "maxAttempts": 5,
      "initialBackoff": "0.1s",
      "maxBackoff": "1s",
      "backoffMultiplier": 2,
      "retryableStatusCodes": ["UNAVAILABLE"]
    }
  }]
}`

// Targets splits a comma-separated address list ("a:7400,b:7400").
func Targets(list string) []string {
	var out []string
	for _, t := range strings.Split(list, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// Dial returns a lazily connecting client connection to target: one address,
// or a comma-separated list of them (several managers of one cluster). With
// tls (nil: plaintext) every server must present a certificate expect accepts.
func Dial(target string, tls *pki.Material, expect func(pki.Identity) error, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	creds := insecure.NewCredentials()
	if tls != nil {
		creds = tls.ClientCredentials(expect)
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds), grpc.WithConnectParams(Backoff),
		grpc.WithDefaultServiceConfig(serviceConfig)}
	addrs := Targets(target)
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no address in %q", target)
	}
	if len(addrs) > 1 {
		r := manual.NewBuilderWithScheme("von-list")
		st := resolver.State{}
		for _, a := range addrs {
			st.Addresses = append(st.Addresses, resolver.Address{Addr: a})
		}
		r.InitialState(st)
		opts = append(opts, grpc.WithResolvers(r))
		target = "von-list:///" + strings.Join(addrs, ",")
	}
	return grpc.NewClient(target, append(opts, extra...)...)
}

// DialManagers dials one manager or a comma-separated list of the managers of
// one cluster, as vonctl, the SDK, vonperf and agents do. A unary call that a
// manager answers "not the leader" (no leader yet during a failover) is retried
// with backoff until its deadline (at most ManagerRetry when it has none), so a
// failover costs a client time, not a failure; a call no manager answers at all
// is retried for ReachRetry (a restart), then fails.
func DialManagers(target string, tls *pki.Material, extra ...grpc.DialOption) (*grpc.ClientConn, error) {
	return Dial(target, tls, pki.Expect(pki.KindManager, ""), append([]grpc.DialOption{grpc.WithChainUnaryInterceptor(retryUnavailable)}, extra...)...)
}

// Retry bounds.
const (
	ManagerRetry = 30 * time.Second // a call without a deadline, while no manager leads
	ReachRetry   = 5 * time.Second  // while no manager answers at all
)

func retryUnavailable(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ManagerRetry)
		defer cancel()
	}
	wait := 100 * time.Millisecond
	start := time.Now()
	for {
		err := invoker(ctx, method, req, reply, cc, opts...)
		if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
			return err
		}
		if !apierr.Is(err, apierr.ErrNotLeader) && time.Since(start) > ReachRetry {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, time.Second)
	}
}

// ServerOptions are the options of every gRPC server: its credentials (nil
// tls: plaintext) and the given interceptors.
func ServerOptions(tls *pki.Material, extra ...grpc.ServerOption) []grpc.ServerOption {
	var opts []grpc.ServerOption
	if tls != nil {
		opts = append(opts, grpc.Creds(tls.ServerCredentials()))
	}
	return append(opts, extra...)
}
