// Package vonv1 is the VON control-plane gRPC API (protobuf package von.v1): the
// ReservationService that vonctl and the SDK call on von-manager, the AgentService
// that the manager calls on each router's von-agent (the two-phase-commit
// participant), and the AgentRegistryService through which agents register with the
// manager.
//
// The .proto files beside this file are the source; the *.pb.go files are generated
// by `make proto` (buf, plugins pinned in buf.gen.yaml) and committed. A test fails
// when the committed code differs from what the .proto files generate. Units and the
// 2PC flow are described in docs/api.md.
package vonv1
