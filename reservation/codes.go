package reservation

import "github.com/vonproject/von/apierr"

// grpcError maps the service's sentinel errors to gRPC status codes and reasons
// (apierr's table), keeping the message, which says what went wrong and what to do.
func grpcError(err error) error { return apierr.ToStatus(err) }
