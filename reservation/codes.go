package reservation

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// grpcError maps the service's sentinel errors to gRPC status codes, keeping the
// message (which says what went wrong and what to do).
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isOurs(err) {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrExists):
		code = codes.AlreadyExists
	case errors.Is(err, ErrInsufficientCapacity), errors.Is(err, ErrIDsExhausted):
		code = codes.ResourceExhausted
	case errors.Is(err, ErrUnplaceable), errors.Is(err, ErrNoTopology), errors.Is(err, ErrInUse), errors.Is(err, ErrBusy):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrAgentDown), errors.Is(err, ErrNotLeader):
		code = codes.Unavailable
	case errors.Is(err, ErrRefused), errors.Is(err, ErrContention), errors.Is(err, ErrGuard):
		code = codes.Aborted
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

func isOurs(err error) bool {
	for _, e := range []error{ErrInvalid, ErrNotFound, ErrExists, ErrInsufficientCapacity, ErrIDsExhausted, ErrUnplaceable,
		ErrNoTopology, ErrInUse, ErrBusy, ErrAgentDown, ErrNotLeader, ErrRefused, ErrContention, ErrGuard} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
