package reservation

import (
	"github.com/vonproject/von/internal/rpcconn"
	"github.com/vonproject/von/pki"
	"google.golang.org/grpc"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

func registerServices(gs *grpc.Server, s *server) {
	vonv1.RegisterReservationServiceServer(gs, s)
	vonv1.RegisterAgentRegistryServiceServer(gs, s)
}

// NewGRPCServer serves m's ReservationService and AgentRegistryService: mutual
// TLS with tls, every call authorized by its certificate (nil: plaintext, every
// caller anonymous and allowed), with message, rate and panic guards.
func NewGRPCServer(m *Manager, tls *pki.Material) *grpc.Server {
	srv := &server{M: m, Secure: tls != nil}
	gs := grpc.NewServer(rpcconn.ServerOptions(tls, srv.Interceptors()...)...)
	registerServices(gs, srv)
	return gs
}
