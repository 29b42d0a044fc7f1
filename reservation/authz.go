package reservation

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vonproject/von/pki"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// Authorization (docs/security.md). On a server with TLS every call carries
// the caller's certificate identity; the interceptors below admit a call only
// from the kinds of identity its method is for, and the handlers check what
// the caller may touch: an agent acts only for its own router, a user only on
// the reservations it owns, an admin on all. On a plaintext (--insecure) server
// every caller is anonymous and may do everything.

// caller is who is calling.
type caller struct {
	id     pki.Identity
	secure bool // false: plaintext server, no identity
}

type callerKey struct{}

func callerOf(ctx context.Context) caller {
	c, _ := ctx.Value(callerKey{}).(caller)
	return c
}

// owner is the name recorded as a new reservation's owner.
func (c caller) owner() string {
	if !c.secure {
		return ""
	}
	return c.id.Name
}

// mayManage says whether the caller may see, renew and release r.
func (c caller) mayManage(r *vonv1.Reservation) bool {
	return !c.secure || c.id.Admin || r.GetOwner() == c.id.Name
}

// mayUse says whether the caller may see and renew r: its owner, an admin,
// or a certificate naming one of its members (members keep their VON alive).
func (c caller) mayUse(r *vonv1.Reservation) bool {
	if c.mayManage(r) {
		return true
	}
	for _, mb := range r.GetMembers() {
		if mb.GetName() == c.id.Name {
			return true
		}
	}
	return false
}

func (c caller) checkUse(r *vonv1.Reservation) error {
	if c.mayUse(r) {
		return nil
	}
	return fmt.Errorf("%w: %q was reserved by %s; only its owner, its members or an admin may use it", ErrPermission, r.GetName(), ownerText(r))
}

func (c caller) checkManage(r *vonv1.Reservation) error {
	if c.mayManage(r) {
		return nil
	}
	return fmt.Errorf("%w: %q was reserved by %s; only its owner or an admin may use it", ErrPermission, r.GetName(), ownerText(r))
}

func ownerText(r *vonv1.Reservation) string {
	if r.GetOwner() == "" {
		return "an anonymous client (the manager ran --insecure then)"
	}
	return "user " + r.GetOwner()
}

// rule is who may call a method.
type rule struct {
	kinds []pki.Kind
	admin bool // users must be admins
}

var (
	users     = rule{kinds: []pki.Kind{pki.KindUser}}
	admins    = rule{kinds: []pki.Kind{pki.KindUser}, admin: true}
	agentOnly = rule{kinds: []pki.Kind{pki.KindAgent}}
)

// methodRules lists every method the manager serves; a method missing here is
// refused on a secure server.
var methodRules = map[string]rule{
	vonv1.ReservationService_ApplyTopology_FullMethodName:         admins,
	vonv1.ReservationService_GetTopology_FullMethodName:           users,
	vonv1.ReservationService_Reserve_FullMethodName:               users,
	vonv1.ReservationService_Get_FullMethodName:                   users,
	vonv1.ReservationService_List_FullMethodName:                  users,
	vonv1.ReservationService_Watch_FullMethodName:                 users,
	vonv1.ReservationService_Renew_FullMethodName:                 users,
	vonv1.ReservationService_KeepAlive_FullMethodName:             users,
	vonv1.ReservationService_Release_FullMethodName:               users,
	vonv1.ReservationService_ListAgents_FullMethodName:            users,
	vonv1.ReservationService_ComputePaths_FullMethodName:          users,
	vonv1.ReservationService_IssueMemberCredential_FullMethodName: users,
	vonv1.ReservationService_GetVerificationKeys_FullMethodName:   users,
	vonv1.ReservationService_ListMembers_FullMethodName:           users,
	vonv1.AgentRegistryService_Register_FullMethodName:            agentOnly,
}

// authorize admits a call to method on a server that is secure or not.
func authorize(ctx context.Context, secure bool, method string) (context.Context, error) {
	if !secure {
		return context.WithValue(ctx, callerKey{}, caller{}), nil
	}
	id, ok := pki.PeerIdentity(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no client certificate: connect with --ca, --cert and --key")
	}
	r, ok := methodRules[method]
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "%s is not open to anyone", method)
	}
	if !slices.Contains(r.kinds, id.Kind) {
		var want []string
		for _, k := range r.kinds {
			want = append(want, string(k))
		}
		return nil, status.Errorf(codes.PermissionDenied, "%s is for %s certificates; this connection presents %s",
			method[strings.LastIndex(method, "/")+1:], strings.Join(want, " or "), id)
	}
	if r.admin && !id.Admin {
		return nil, status.Errorf(codes.PermissionDenied, "%s needs an admin certificate (von-manager pki issue --kind user --admin); %s is not an admin",
			method[strings.LastIndex(method, "/")+1:], id)
	}
	return context.WithValue(ctx, callerKey{}, caller{id: id, secure: true}), nil
}

// Interceptors returns the server options of the manager's gRPC server: the
// message size limit, panic recovery and per-client rate limits (limits.go),
// then authorization.
func (s *server) Interceptors() []grpc.ServerOption {
	return append(s.guardOptions(),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			ctx, err := authorize(ctx, s.Secure, info.FullMethod)
			if err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			ctx, err := authorize(ss.Context(), s.Secure, info.FullMethod)
			if err != nil {
				return err
			}
			return h(srv, &ctxStream{ServerStream: ss, ctx: ctx})
		}),
	)
}

type ctxStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (c *ctxStream) Context() context.Context { return c.ctx }

// checkMember admits the owner of reservation name, an admin, or a caller whose
// certificate names member (any member of it when member is empty).
func (s *server) checkMember(ctx context.Context, name, member string) error {
	c := callerOf(ctx)
	if !c.secure {
		return nil
	}
	r, err := s.M.Get(ctx, name)
	if err != nil {
		return nil // the operation reports it
	}
	if c.mayManage(r) {
		return nil
	}
	for _, mb := range r.GetMembers() {
		if mb.GetName() == c.id.Name && (member == "" || member == c.id.Name) {
			return nil
		}
	}
	if member != "" {
		return fmt.Errorf("%w: a credential for member %s of %q goes to its owner or to a certificate named %s; this one names %s",
			ErrPermission, member, name, member, c.id)
	}
	return fmt.Errorf("%w: %s is neither the owner of %q nor one of its members", ErrPermission, c.id, name)
}
