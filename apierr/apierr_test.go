package apierr

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Every sentinel survives the trip through a gRPC status, by reason, whatever
// its message says.
func TestRoundTrip(t *testing.T) {
	seen := map[string]bool{}
	for _, e := range table {
		if seen[e.reason] {
			t.Fatalf("reason %s twice", e.reason)
		}
		seen[e.reason] = true
		st := ToStatus(fmt.Errorf("detail: %w", e.err))
		if status.Code(st) != e.code || Reason(st) != e.reason {
			t.Errorf("%v → %v %q", e.err, status.Code(st), Reason(st))
		}
		// What a client receives is a fresh status with the details on the wire.
		wire := status.FromProto(status.Convert(st).Proto()).Err()
		if back := FromStatus(wire); !errors.Is(back, e.err) {
			t.Errorf("%v came back as %v", e.err, back)
		}
	}
	if status.Code(ToStatus(context.DeadlineExceeded)) != codes.DeadlineExceeded || status.Code(ToStatus(errors.New("x"))) != codes.Internal {
		t.Error("non-table errors")
	}
	plain := status.Error(codes.NotFound, "reservation not found")
	if FromStatus(plain) != plain || Is(plain, ErrNotFound) {
		t.Error("a status without a reason was matched by its text")
	}
}
