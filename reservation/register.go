package reservation

import (
	"google.golang.org/grpc"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

func registerServices(gs *grpc.Server, s *Server) {
	vonv1.RegisterReservationServiceServer(gs, s)
	vonv1.RegisterAgentRegistryServiceServer(gs, s)
}
