package agent

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vonproject/von/partition"
)

// Sentinel errors of the agent. Callers test them with errors.Is; the wrapped
// message says which txn, ON or interface was involved. toStatus maps them to
// gRPC codes.
var (
	// ErrInvalid: a request or the configuration is malformed (INVALID_ARGUMENT).
	ErrInvalid = errors.New("agent: invalid argument")
	// ErrStaleEpoch: the caller's leader_epoch is below the highest the agent has
	// seen; the caller is a deposed leader (FAILED_PRECONDITION).
	ErrStaleEpoch = errors.New("agent: stale leader epoch")
	// ErrConflict: the request contradicts the txn's recorded outcome, e.g.
	// aborting a committed txn or committing an aborted one (FAILED_PRECONDITION).
	ErrConflict = errors.New("agent: conflicts with the recorded outcome")
	// ErrNotFound: the agent holds no record of the txn (NOT_FOUND).
	ErrNotFound = errors.New("agent: not found")
	// ErrExhausted: a router resource (capacity, class ids, pin slots) is used
	// up (RESOURCE_EXHAUSTED).
	ErrExhausted = errors.New("agent: resources exhausted")
	// ErrPrecondition: the router cannot enforce the spec as it is now (missing
	// or down interface, foreign root qdisc) (FAILED_PRECONDITION).
	ErrPrecondition = errors.New("agent: router cannot enforce the partition")
	// ErrUnavailable: the kernel or the journal failed; retrying may succeed
	// (UNAVAILABLE).
	ErrUnavailable = errors.New("agent: temporarily unavailable")
	// ErrClosed: the agent has stopped (UNAVAILABLE).
	ErrClosed = errors.New("agent: stopped")
)

// toStatus turns an error into a gRPC status error with a code a manager can act on.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codeOf(err), err.Error())
}

func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, ErrInvalid), errors.Is(err, partition.ErrInvalid):
		return codes.InvalidArgument
	case errors.Is(err, ErrStaleEpoch), errors.Is(err, ErrConflict), errors.Is(err, ErrPrecondition),
		errors.Is(err, partition.ErrForeignQdisc), errors.Is(err, partition.ErrNoSuchInterface),
		errors.Is(err, partition.ErrKernelFeature):
		return codes.FailedPrecondition
	case errors.Is(err, ErrNotFound):
		return codes.NotFound
	case errors.Is(err, ErrExhausted), errors.Is(err, partition.ErrOverbooked),
		errors.Is(err, partition.ErrClassesExhausted), errors.Is(err, partition.ErrPinSlotsExhausted):
		return codes.ResourceExhausted
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	default:
		return codes.Unavailable
	}
}

func invalidf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}
