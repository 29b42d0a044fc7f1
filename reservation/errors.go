package reservation

import "errors"

// Sentinel errors of the reservation service; the gRPC layer maps them to status codes
// (see codes.go).
var (
	// ErrInsufficientCapacity: a link on the ON's paths cannot carry the requested rate.
	ErrInsufficientCapacity = errors.New("insufficient capacity")
	// ErrExists: a reservation with that name already exists.
	ErrExists = errors.New("reservation already exists")
	// ErrNotFound: no reservation with that name.
	ErrNotFound = errors.New("reservation not found")
	// ErrIDsExhausted: no free ON id could be found.
	ErrIDsExhausted = errors.New("no free ON id")
	// ErrContention: the store stayed contended after many retries.
	ErrContention = errors.New("too much contention, try again")
	// ErrInvalid: the request is malformed.
	ErrInvalid = errors.New("invalid request")
)

var (
	// ErrNoTopology: no topology has been applied yet.
	ErrNoTopology = errors.New("no topology applied: run `vonctl topology apply -f FILE` first")
	// ErrInUse: the change would strand a live reservation.
	ErrInUse = errors.New("in use by a reservation")
	// ErrAgentDown: a router on the ON's paths has no live agent.
	ErrAgentDown = errors.New("router agent not available")
	// ErrRefused: an agent voted against the reservation.
	ErrRefused = errors.New("refused by a router")
	// ErrNotLeader: this manager is not the leader.
	ErrNotLeader = errors.New("not the leader manager")
)

// ErrUnplaceable: no placement satisfies the request (no path, no disjoint pair, an
// interface or next hop unknown).
var ErrUnplaceable = errors.New("cannot place the reservation")

// ErrBusy: the reservation is in a state that does not allow the operation now.
var ErrBusy = errors.New("reservation busy")
