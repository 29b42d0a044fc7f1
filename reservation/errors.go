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
