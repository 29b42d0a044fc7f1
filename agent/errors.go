package agent

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/status"

	"github.com/vonproject/von/apierr"
	"github.com/vonproject/von/partition"
)

// Sentinel errors of the agent: the agent protocol's rows of the API's error
// table (package apierr), which maps them to gRPC codes and reasons both ways.
// Callers test them with errors.Is; the wrapped message says which txn, ON or
// interface was involved.
var (
	ErrInvalid      = apierr.ErrAgentInvalid     // a request or the configuration is malformed
	ErrStaleEpoch   = apierr.ErrStaleEpoch       // the caller is a deposed leader or of another cluster
	ErrConflict     = apierr.ErrConflict         // the request contradicts the txn's recorded outcome
	ErrNotFound     = apierr.ErrNoHold           // the agent holds no record of the txn
	ErrExhausted    = apierr.ErrExhausted        // a router resource is used up
	ErrPrecondition = apierr.ErrPrecondition     // the router cannot enforce the spec as it is now
	ErrUnavailable  = apierr.ErrAgentUnavailable // the kernel or the journal failed; retrying may succeed
	ErrClosed       = apierr.ErrAgentStopped     // the agent has stopped
)

// toStatus turns an error into a gRPC status error a manager can act on: the
// data plane's errors are given the agent sentinel they amount to, anything
// unrecognised is UNAVAILABLE (retry).
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
	case errors.Is(err, partition.ErrInvalid):
		err = fmt.Errorf("%w: %w", ErrInvalid, err)
	case errors.Is(err, partition.ErrForeignQdisc), errors.Is(err, partition.ErrNoSuchInterface), errors.Is(err, partition.ErrKernelFeature):
		err = fmt.Errorf("%w: %w", ErrPrecondition, err)
	case errors.Is(err, partition.ErrOverbooked), errors.Is(err, partition.ErrClassesExhausted), errors.Is(err, partition.ErrPinSlotsExhausted):
		err = fmt.Errorf("%w: %w", ErrExhausted, err)
	case !isAgentError(err):
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return apierr.ToStatus(err)
}

func isAgentError(err error) bool {
	for _, e := range []error{ErrInvalid, ErrStaleEpoch, ErrConflict, ErrNotFound, ErrExhausted, ErrPrecondition, ErrUnavailable, ErrClosed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

func invalidf(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}
