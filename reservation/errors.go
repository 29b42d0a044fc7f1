package reservation

import "github.com/vonproject/von/apierr"

// Sentinel errors of the reservation service: the API's (package apierr holds the
// table that maps them to gRPC codes and reasons, both ways).
var (
	ErrInsufficientCapacity = apierr.ErrInsufficientCapacity // a link on the paths cannot carry the rate
	ErrExists               = apierr.ErrExists               // a reservation with that name exists
	ErrNotFound             = apierr.ErrNotFound             // no reservation with that name
	ErrIDsExhausted         = apierr.ErrIDsExhausted         // no free ON id could be found
	ErrContention           = apierr.ErrContention           // the store stayed contended after many retries
	ErrInvalid              = apierr.ErrInvalid              // the request is malformed
	ErrNoTopology           = apierr.ErrNoTopology           // no topology has been applied yet
	ErrInUse                = apierr.ErrInUse                // the change would strand a live reservation
	ErrAgentDown            = apierr.ErrAgentDown            // a router on the paths has no live agent
	ErrRefused              = apierr.ErrRefused              // an agent voted against the reservation
	ErrNotLeader            = apierr.ErrNotLeader            // this manager is not the leader
	ErrUnplaceable          = apierr.ErrUnplaceable          // no placement satisfies the request
	ErrBusy                 = apierr.ErrBusy                 // the reservation's state does not allow it now
	ErrNotCommitted         = apierr.ErrNotCommitted         // not COMMITTED (or its lease ran out): no VON to join
	ErrNotMember            = apierr.ErrNotMember            // the named member is not one of the reservation's
	ErrNotEnforced          = apierr.ErrNotEnforced          // a committed ON is not installed on a router (yet)
	ErrPermission           = apierr.ErrPermission           // the caller's certificate does not allow it
	ErrGuard                = apierr.ErrGuard                // a guarded etcd transaction found the world changed
	ErrUnknownOutcome       = apierr.ErrUnknownOutcome       // the store failed mid-decision; a retry learns the outcome
)
