// Package apierr is the VON API's error table: each sentinel error with its gRPC
// code and a reason, carried in the status as an errdetails.ErrorInfo, used both
// ways — the manager turns its errors into statuses with ToStatus, clients
// (vonctl, the SDK) turn statuses back into the same sentinels with FromStatus
// and act on errors.Is, never on message text.
package apierr

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Domain is the ErrorInfo domain of every VON reason.
const Domain = "von.v1"

// The API's sentinel errors. Each is wrapped with the detail.
var (
	ErrInvalid              = errors.New("invalid request")
	ErrNotFound             = errors.New("reservation not found")
	ErrExists               = errors.New("reservation already exists")
	ErrInsufficientCapacity = errors.New("insufficient capacity")
	ErrIDsExhausted         = errors.New("no free ON id")
	ErrUnplaceable          = errors.New("cannot place the reservation")
	ErrNoTopology           = errors.New("no topology applied: run `vonctl topology apply -f FILE` first")
	ErrInUse                = errors.New("in use by a reservation")
	ErrBusy                 = errors.New("reservation busy")
	ErrNotCommitted         = errors.New("ON not committed")
	ErrAgentDown            = errors.New("router agent not available")
	ErrNotMember            = errors.New("not a member")
	ErrPermission           = errors.New("permission denied")
	ErrNotLeader            = errors.New("not the leader manager")
	ErrRefused              = errors.New("refused by a router")
	ErrContention           = errors.New("too much contention, try again")
	ErrGuard                = errors.New("admission guard failed")
	ErrNotEnforced          = errors.New("not enforced")
	ErrUnknownOutcome       = errors.New("outcome unknown")
)

// The agent protocol's (AgentService) sentinel errors: what a router's agent
// answers its managers.
var (
	ErrAgentInvalid     = errors.New("agent: invalid argument")
	ErrStaleEpoch       = errors.New("agent: stale leader epoch")                  // a deposed leader, or another cluster
	ErrConflict         = errors.New("agent: conflicts with the recorded outcome") // e.g. committing an aborted txn
	ErrNoHold           = errors.New("agent: not found")                           // no record of the txn
	ErrExhausted        = errors.New("agent: resources exhausted")                 // capacity, class ids, pin slots
	ErrPrecondition     = errors.New("agent: router cannot enforce the partition") // interface missing or down, foreign qdisc
	ErrAgentUnavailable = errors.New("agent: temporarily unavailable")             // kernel or journal failed; retry
	ErrAgentStopped     = errors.New("agent: stopped")
)

// entry is one row of the table.
type entry struct {
	err    error
	code   codes.Code
	reason string
}

// table: the first row whose error matches decides (wrapped errors may match
// several).
var table = []entry{
	{ErrInvalid, codes.InvalidArgument, "INVALID"},
	{ErrNotFound, codes.NotFound, "NOT_FOUND"},
	{ErrExists, codes.AlreadyExists, "EXISTS"},
	{ErrInsufficientCapacity, codes.ResourceExhausted, "INSUFFICIENT_CAPACITY"},
	{ErrIDsExhausted, codes.ResourceExhausted, "IDS_EXHAUSTED"},
	{ErrUnplaceable, codes.FailedPrecondition, "UNPLACEABLE"},
	{ErrNoTopology, codes.FailedPrecondition, "NO_TOPOLOGY"},
	{ErrInUse, codes.FailedPrecondition, "IN_USE"},
	{ErrBusy, codes.FailedPrecondition, "BUSY"},
	{ErrNotCommitted, codes.FailedPrecondition, "NOT_COMMITTED"},
	// A router without a live agent is a state of the network the request needs,
	// not a manager that is down: clients must not retry it elsewhere.
	{ErrAgentDown, codes.FailedPrecondition, "AGENT_DOWN"},
	{ErrNotMember, codes.PermissionDenied, "NOT_MEMBER"},
	{ErrPermission, codes.PermissionDenied, "PERMISSION"},
	{ErrNotLeader, codes.Unavailable, "NOT_LEADER"}, // clients retry on another manager
	{ErrRefused, codes.Aborted, "REFUSED"},
	{ErrContention, codes.Aborted, "CONTENTION"},
	{ErrGuard, codes.Aborted, "GUARD"},
	{ErrNotEnforced, codes.Unavailable, "NOT_ENFORCED"},
	// The store failed mid-decision; a retry learns the outcome.
	{ErrUnknownOutcome, codes.Unavailable, "UNKNOWN_OUTCOME"},

	{ErrAgentInvalid, codes.InvalidArgument, "AGENT_INVALID"},
	{ErrStaleEpoch, codes.FailedPrecondition, "STALE_EPOCH"},
	{ErrConflict, codes.FailedPrecondition, "CONFLICT"},
	{ErrNoHold, codes.NotFound, "NO_HOLD"},
	{ErrExhausted, codes.ResourceExhausted, "EXHAUSTED"},
	{ErrPrecondition, codes.FailedPrecondition, "PRECONDITION"},
	{ErrAgentUnavailable, codes.Unavailable, "AGENT_UNAVAILABLE"},
	{ErrAgentStopped, codes.Unavailable, "AGENT_STOPPED"},
}

// ToStatus turns err into a gRPC status error: a table error gets its code and
// reason, context errors their codes; an existing status passes unchanged;
// anything else is INTERNAL. The message is err's text (what went wrong and
// what to do).
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	for _, e := range table {
		if errors.Is(err, e.err) {
			st := status.New(e.code, err.Error())
			if d, derr := st.WithDetails(&errdetails.ErrorInfo{Domain: Domain, Reason: e.reason}); derr == nil {
				st = d
			}
			return st.Err()
		}
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// Reason is the VON reason a status error carries ("" if none).
func Reason(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == Domain {
			return info.GetReason()
		}
	}
	return ""
}

// FromStatus turns a status error from a VON server back into the table's
// sentinel (wrapped with the message), or returns err unchanged when it
// carries no VON reason.
func FromStatus(err error) error {
	r := Reason(err)
	if r == "" {
		return err
	}
	for _, e := range table {
		if e.reason == r {
			return fmt.Errorf("%w: %s", e.err, status.Convert(err).Message())
		}
	}
	return err
}

// Is reports whether err (a status error or a Go error) is target.
func Is(err, target error) bool { return errors.Is(FromStatus(err), target) }
