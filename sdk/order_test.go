package sdk

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"
)

// The member whose name sorts first (the group's coordinator) joins last; what it
// sends right after Join opens at the others.
func TestCoordinatorJoinsLast(t *testing.T) {
	addr, c := startManager(t)
	reserve(t, c, "late", false, "h1", "h2", "h3")
	vs := joinAll(t, addr, "late", "h2", "h3")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h1, err := Join(ctx, Config{Manager: addr, Insecure: true, ON: "late", Member: "h1", ListenAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()
	waitFor(t, 5*time.Second, "h1 sees h2", func() bool { return h1.Ready("h2") })
	for i := range 50 {
		if err := h1.Send(ctx, "h2", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for i := range 50 {
		m, err := vs["h2"].Recv(ctx)
		if err != nil {
			t.Fatalf("message %d: %v; h2 stats %+v, h1 epoch %d, h2 epoch %d", i, err, vs["h2"].Stats(), h1.Epoch(), vs["h2"].Epoch())
		}
		_ = m
	}
	if st := vs["h2"].Stats(); st.Rejected != 0 {
		t.Errorf("h2 rejected %d packets", st.Rejected)
	}
}

// Two members join at the same moment: both may find an empty registry and found a
// group each; a third that seeds from both merges them, and what it sends opens at
// both.
func TestConcurrentFounders(t *testing.T) {
	addr, c := startManager(t)
	reserve(t, c, "twofounders", false, "h1", "h2", "h3")
	vs := map[string]*VON{}
	errs := make(chan error, 2)
	var mu sync.Mutex
	for _, m := range []string{"h2", "h3"} {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			v, err := Join(ctx, Config{Manager: addr, Insecure: true, ON: "twofounders", Member: m, ListenAddr: "127.0.0.1:0", Logger: debugLogger(m)})
			if err == nil {
				mu.Lock()
				vs[m] = v
				mu.Unlock()
				t.Cleanup(func() { _ = v.Close() })
			}
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	h1, err := Join(ctx, Config{Manager: addr, Insecure: true, ON: "twofounders", Member: "h1", ListenAddr: "127.0.0.1:0", Logger: debugLogger("h1")})
	if err != nil {
		t.Fatal(err)
	}
	defer h1.Close()
	waitFor(t, 5*time.Second, "all see three", func() bool {
		return len(h1.Members()) == 3 && len(vs["h2"].Members()) == 3 && len(vs["h3"].Members()) == 3
	})
	for _, to := range []string{"h2", "h3"} {
		for i := range 20 {
			if err := h1.Send(ctx, to, []byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 20 {
			if _, err := vs[to].Recv(ctx); err != nil {
				t.Fatalf("%s message %d: %v; stats %+v, epochs h1 %d %s %d", to, i, err, vs[to].Stats(), h1.Epoch(), to, vs[to].Epoch())
			}
		}
	}
}

func debugLogger(name string) *slog.Logger {
	if os.Getenv("SDK_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("member", name)
}
