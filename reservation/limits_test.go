package reservation

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestLimiter(t *testing.T) {
	l := newLimiter(10)
	now := time.Now()
	n := 0
	for range 100 {
		if l.allow("a", now) {
			n++
		}
	}
	if n != 20 { // a burst of twice the rate
		t.Fatalf("burst allowed %d, want 20", n)
	}
	if !l.allow("b", now) {
		t.Fatal("another client was limited")
	}
	if !l.allow("a", now.Add(150*time.Millisecond)) || l.allow("a", now.Add(150*time.Millisecond)) {
		t.Fatal("after 150 ms at 10/s one call, not two")
	}
	if off := newLimiter(0); !off.allow("a", now) {
		t.Fatal("no limit limited")
	}
}

// No input panics the manager: a panicking handler answers INTERNAL; a client
// over its rate is told to slow down.
func TestGuard(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	err := guard(context.Background(), log, newLimiter(0), "/x/Y", func() error { panic("boom") })
	if status.Code(err) != codes.Internal {
		t.Fatalf("panic: %v", err)
	}
	l := newLimiter(1)
	for range 2 {
		_ = guard(context.Background(), log, l, "/x/Y", func() error { return nil })
	}
	if err := guard(context.Background(), log, l, "/x/Y", func() error { return nil }); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("over the rate: %v", err)
	}
}
