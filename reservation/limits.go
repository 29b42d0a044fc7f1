package reservation

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/vonproject/von/pki"
)

// Limits on what one request may ask for (docs/api.md, "Limits").
const (
	// MinRate is the smallest ON rate: HTB counts in bytes, and tiny rates
	// only grow etcd and burn ids.
	MinRate = 1000 // bit/s
	// MaxMembers bounds an ON's members (its paths grow with the square).
	MaxMembers = 64
	// MaxMemberName bounds a member name (topology node names are shorter).
	MaxMemberName = 128
	// MaxNamesPerCall bounds the reservation names one KeepAlive or Watch lists.
	MaxNamesPerCall = 1000
	// DefaultPageSize and MaxPageSize bound a List page.
	DefaultPageSize = 100
	MaxPageSize     = 1000
	// MaxRecvMsgSize bounds one request message the manager reads.
	MaxRecvMsgSize = 4 << 20
	// DefaultRateLimit is how many calls per second one client (certificate
	// name, or address when insecure) may make, with bursts of twice that.
	DefaultRateLimit = 500
)

// limiter is a token bucket per client.
type limiter struct {
	rate float64 // tokens per second; 0: no limit
	mu   sync.Mutex
	b    map[string]*bucket
	last time.Time // of the last sweep
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(perSecond int) *limiter {
	return &limiter{rate: float64(max(perSecond, 0)), b: map[string]*bucket{}}
}

// allow takes one token from client's bucket.
func (l *limiter) allow(client string, now time.Time) bool {
	if l.rate == 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.last) > time.Minute { // forget idle clients
		for k, b := range l.b {
			if now.Sub(b.at) > time.Minute {
				delete(l.b, k)
			}
		}
		l.last = now
	}
	b := l.b[client]
	if b == nil {
		b = &bucket{tokens: 2 * l.rate, at: now}
		l.b[client] = b
	}
	b.tokens = min(2*l.rate, b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// clientKey names the client of a call for rate limiting.
func clientKey(ctx context.Context) string {
	if id, ok := pki.PeerIdentity(ctx); ok {
		return id.String()
	}
	if p, ok := peer.FromContext(ctx); ok {
		if host, _, err := net.SplitHostPort(p.Addr.String()); err == nil {
			return host
		}
		return p.Addr.String()
	}
	return ""
}

// guard is the outermost check of every call: a panic becomes INTERNAL (no
// input may take the daemon down) and a client over its rate is told to slow
// down.
func guard(ctx context.Context, log *slog.Logger, l *limiter, method string, call func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic in handler", "method", method, "panic", r, "stack", string(debug.Stack()))
			err = status.Errorf(codes.Internal, "manager: internal error in %s", method)
		}
	}()
	if !l.allow(clientKey(ctx), time.Now()) {
		return status.Errorf(codes.ResourceExhausted, "rate limit: more than %.0f calls/s from this client; slow down and retry", l.rate)
	}
	return call()
}

func (s *server) guardOptions() []grpc.ServerOption {
	s.limitOnce.Do(func() {
		rate := s.RateLimit
		if rate == 0 {
			rate = DefaultRateLimit
		}
		s.limit = newLimiter(rate)
	})
	log := s.M.Logger()
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
			err = guard(ctx, log, s.limit, info.FullMethod, func() error {
				var herr error
				resp, herr = h(ctx, req)
				return herr
			})
			return resp, err
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return guard(ss.Context(), log, s.limit, info.FullMethod, func() error { return h(srv, ss) })
		}),
	}
}

// checkMembers validates the member list of a request.
func checkMembers(members []string) error {
	if len(members) < 2 {
		return fmt.Errorf("%w: an ON needs at least two members, got %d", ErrInvalid, len(members))
	}
	if len(members) > MaxMembers {
		return fmt.Errorf("%w: %d members; an ON has at most %d", ErrInvalid, len(members), MaxMembers)
	}
	seen := map[string]bool{}
	for _, mb := range members {
		if mb == "" || len(mb) > MaxMemberName {
			return fmt.Errorf("%w: member name %.40q is empty or longer than %d characters", ErrInvalid, mb, MaxMemberName)
		}
		if seen[mb] {
			return fmt.Errorf("%w: member %q listed twice", ErrInvalid, mb)
		}
		seen[mb] = true
	}
	return nil
}
