package gossipnet

import (
	"bytes"
	crand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// dialPair dials from a to b and returns both ends.
func dialPair(t *testing.T, a, b *Transport) (client, server net.Conn) {
	t.Helper()
	client, err := a.DialTimeout(b.LocalAddr().String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case server = <-b.StreamCh():
	case <-time.After(2 * time.Second):
		t.Fatal("no accepted stream")
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = crand.Read(b)
	return b
}

// exchange writes out on c while reading n bytes from it, then closes c.
func exchange(c net.Conn, out []byte, n int) (in []byte, werr, rerr error) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		in, rerr = readN(c, n)
	}()
	_, werr = c.Write(out)
	wg.Wait()
	_ = c.Close()
	return in, werr, rerr
}

func TestStreamLargeTransferUnderLoss(t *testing.T) {
	em := netem{dropCall: 0.2, reorder: 0.1} // 20% of datagrams lose both copies
	a, _ := newNode(t, em, Config{})
	b, _ := newNode(t, em, Config{})
	client, server := dialPair(t, a, b)
	deadline := time.Now().Add(15 * time.Second)
	_ = client.SetDeadline(deadline)
	_ = server.SetDeadline(deadline)

	up, down := randBytes(1<<20), randBytes(1<<20)
	start := time.Now()
	type result struct {
		in         []byte
		werr, rerr error
	}
	srv := make(chan result, 1)
	go func() {
		// The server reads the whole upload, then answers with the download.
		in, rerr := readN(server, len(up))
		_, werr := server.Write(down)
		_ = server.Close()
		srv <- result{in, werr, rerr}
	}()
	if _, err := client.Write(up); err != nil {
		t.Fatalf("client write: %v", err)
	}
	got, err := io.ReadAll(client)
	if err != nil {
		t.Fatalf("client read: %v", err)
	}
	_ = client.Close()
	r := <-srv
	if r.werr != nil || r.rerr != nil {
		t.Fatalf("server: write %v, read %v", r.werr, r.rerr)
	}
	if !bytes.Equal(r.in, up) {
		t.Fatalf("upload corrupted: got %d bytes", len(r.in))
	}
	if !bytes.Equal(got, down) {
		t.Fatalf("download corrupted: got %d bytes", len(got))
	}
	t.Logf("2 MiB under 20%% loss in %v, retransmits a=%d b=%d", time.Since(start),
		a.Stats().Retransmits, b.Stats().Retransmits)
	waitFor(t, 5*time.Second, "streams retired", func() bool {
		return a.Stats().StreamsOpen == 0 && b.Stats().StreamsOpen == 0
	})
}

func TestStreamBothDirectionsConcurrently(t *testing.T) {
	em := netem{dropCall: 0.2, reorder: 0.1}
	a, _ := newNode(t, em, Config{})
	b, _ := newNode(t, em, Config{})
	client, server := dialPair(t, a, b)
	deadline := time.Now().Add(15 * time.Second)
	_ = client.SetDeadline(deadline)
	_ = server.SetDeadline(deadline)
	up, down := randBytes(1<<20), randBytes(1<<20)
	var sin []byte
	var serr [2]error
	done := make(chan struct{})
	go func() {
		defer close(done)
		sin, serr[0], serr[1] = exchange(server, down, len(up))
	}()
	cin, werr, rerr := exchange(client, up, len(down))
	<-done
	if werr != nil || rerr != nil || serr[0] != nil || serr[1] != nil {
		t.Fatalf("client %v/%v server %v/%v", werr, rerr, serr[0], serr[1])
	}
	if !bytes.Equal(sin, up) || !bytes.Equal(cin, down) {
		t.Fatalf("corrupted: server got %d bytes, client got %d", len(sin), len(cin))
	}
}

func readN(c net.Conn, n int) ([]byte, error) {
	b := make([]byte, n)
	_, err := io.ReadFull(c, b)
	return b, err
}

func TestStreamCloseEOF(t *testing.T) {
	a, _ := newNode(t, netem{reorder: 0.2}, Config{})
	b, _ := newNode(t, netem{reorder: 0.2}, Config{})
	client, server := dialPair(t, a, b)
	if _, err := client.Write([]byte("hello, world")); err != nil {
		t.Fatal(err)
	}
	if err := client.Close(); err != nil {
		t.Fatal(err)
	}
	if err := client.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if _, err := client.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	_ = server.SetReadDeadline(time.Now().Add(3 * time.Second))
	got, err := io.ReadAll(server)
	if err != nil || string(got) != "hello, world" {
		t.Fatalf("server read %q, %v", got, err)
	}
	if n, err := server.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF: %d, %v", n, err)
	}
	// Writing to a peer that closed is absorbed (acked and discarded).
	if _, err := server.Write([]byte("late")); err != nil {
		t.Fatalf("server write after peer close: %v", err)
	}
	if err := server.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "streams retired", func() bool {
		return a.Stats().StreamsOpen == 0 && b.Stats().StreamsOpen == 0
	})
}

func TestStreamDeadlines(t *testing.T) {
	a, _ := newNode(t, netem{}, Config{})
	b, _ := newNode(t, netem{}, Config{})
	client, server := dialPair(t, a, b)

	// Read deadline with no data.
	start := time.Now()
	_ = client.SetReadDeadline(start.Add(100 * time.Millisecond))
	_, err := client.Read(make([]byte, 10))
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read: %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond || d > time.Second {
		t.Fatalf("Read returned after %v", d)
	}

	// The stream survives a timeout.
	_ = client.SetReadDeadline(time.Time{})
	if _, err := server.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if got, err := readN(client, 4); err != nil || string(got) != "ping" {
		t.Fatalf("read after timeout: %q %v", got, err)
	}

	// Moving the deadline into the past wakes a blocked Read.
	errc := make(chan error, 1)
	go func() {
		_, err := client.Read(make([]byte, 1))
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond)
	_ = client.SetReadDeadline(time.Now().Add(-time.Second))
	select {
	case err := <-errc:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("woken Read: %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("SetReadDeadline did not wake Read")
	}

	// Write deadline: the server never reads, so the windows fill and Write blocks.
	start = time.Now()
	_ = client.SetWriteDeadline(start.Add(300 * time.Millisecond))
	n, err := client.Write(make([]byte, 4<<20))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n >= 4<<20 {
		t.Fatalf("Write: n=%d err=%v, want deadline exceeded", n, err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Fatalf("Write returned after %v", d)
	}
	// Reading drains the server's buffer; the window reopens and the rest flows.
	_ = client.SetWriteDeadline(time.Time{})
	_ = server.SetReadDeadline(time.Now().Add(5 * time.Second))
	go func() { _, _ = client.Write(make([]byte, 100<<10)); _ = client.Close() }()
	got, err := io.ReadAll(server)
	if err != nil || len(got) != n+100<<10 {
		t.Fatalf("drained %d bytes (want %d): %v", len(got), n+100<<10, err)
	}
}

func TestDialDeadAddressTimesOut(t *testing.T) {
	a, _ := newNode(t, netem{}, Config{})
	// A bound socket that never answers.
	dead, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	for _, addr := range []string{dead.LocalAddr().String(), "127.0.0.1:9"} {
		start := time.Now()
		c, err := a.DialTimeout(addr, 300*time.Millisecond)
		d := time.Since(start)
		if err == nil {
			c.Close()
			t.Fatalf("dial %s succeeded", addr)
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("dial %s: %v, want deadline exceeded", addr, err)
		}
		if d < 300*time.Millisecond || d > 800*time.Millisecond {
			t.Fatalf("dial %s failed after %v", addr, d)
		}
	}
	if _, err := a.DialTimeout("not an address", time.Second); err == nil {
		t.Fatal("dial to a bad address succeeded")
	}
	if n := a.Stats().StreamsOpen; n != 0 {
		t.Fatalf("%d streams left after failed dials", n)
	}
}

func TestDialRefusedAtMaxStreams(t *testing.T) {
	a, _ := newNode(t, netem{}, Config{})
	b, _ := newNode(t, netem{}, Config{MaxStreams: 1})
	c1, err := a.DialTimeout(b.LocalAddr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	start := time.Now()
	_, err = a.DialTimeout(b.LocalAddr().String(), 2*time.Second)
	if !errors.Is(err, ErrRefused) || time.Since(start) > time.Second {
		t.Fatalf("second dial: %v after %v, want prompt ErrRefused", err, time.Since(start))
	}
}

func TestDialWaitsForFullAcceptQueue(t *testing.T) {
	a, _ := newNode(t, netem{}, Config{})
	b, _ := newNode(t, netem{}, Config{AcceptQueue: 1})
	c1, err := a.DialTimeout(b.LocalAddr().String(), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	go func() {
		time.Sleep(200 * time.Millisecond)
		(<-b.StreamCh()).Close() // make room
	}()
	c2, err := a.DialTimeout(b.LocalAddr().String(), 2*time.Second)
	if err != nil {
		t.Fatalf("second dial: %v", err)
	}
	defer c2.Close()
	if got := <-b.StreamCh(); got.RemoteAddr().String() != a.LocalAddr().String() {
		t.Fatalf("accepted stream from %v", got.RemoteAddr())
	}
}

func TestStreamResetOnPeerShutdown(t *testing.T) {
	a, _ := newNode(t, netem{}, Config{})
	b, _ := newNode(t, netem{}, Config{})
	client, server := dialPair(t, a, b)
	errc := make(chan error, 1)
	go func() {
		_, err := server.Read(make([]byte, 1))
		errc <- err
	}()
	time.Sleep(20 * time.Millisecond)
	_ = b.Shutdown()
	if err := <-errc; !errors.Is(err, ErrShutdown) {
		t.Fatalf("local Read after Shutdown: %v", err)
	}
	_ = client.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, ErrReset) {
		t.Fatalf("peer Read: %v, want ErrReset", err)
	}
	if _, err := b.DialTimeout(a.LocalAddr().String(), time.Second); !errors.Is(err, ErrShutdown) {
		t.Fatalf("dial after Shutdown: %v", err)
	}
}

func TestStreamIdleTimeout(t *testing.T) {
	a, _ := newNode(t, netem{}, Config{IdleTimeout: 300 * time.Millisecond})
	b, cb := newNode(t, netem{}, Config{IdleTimeout: time.Hour})
	client, _ := dialPair(t, a, b)
	cb.setNetem(netem{dropCall: 1}) // b goes silent
	start := time.Now()
	_, err := client.Read(make([]byte, 1))
	if !errors.Is(err, ErrIdle) {
		t.Fatalf("Read: %v, want ErrIdle", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("idle reset after %v", d)
	}
	waitFor(t, time.Second, "stream reaped", func() bool { return a.Stats().StreamsOpen == 0 })
}

func TestManyConcurrentStreams(t *testing.T) {
	em := netem{dropCall: 0.1, reorder: 0.1}
	a, _ := newNode(t, em, Config{})
	b, _ := newNode(t, em, Config{})
	stop := make(chan struct{})
	var srv sync.WaitGroup
	srv.Add(1)
	go func() { // echo server
		defer srv.Done()
		for {
			select {
			case <-stop:
				return
			case c := <-b.StreamCh():
				srv.Add(1)
				go func() {
					defer srv.Done()
					_ = c.SetDeadline(time.Now().Add(10 * time.Second))
					_, _ = io.Copy(c, c)
					_ = c.Close()
				}()
			}
		}
	}()
	defer func() { close(stop); srv.Wait() }()

	const streams, size = 50, 32 << 10
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := a.DialTimeout(b.LocalAddr().String(), 3*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			out := randBytes(size)
			go func() { _, _ = c.Write(out) }()
			in, err := readN(c, size)
			if err != nil || !bytes.Equal(in, out) {
				errs <- fmt.Errorf("stream %d: echo mismatch (%v)", i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	waitFor(t, 5*time.Second, "streams retired", func() bool {
		return a.Stats().StreamsOpen == 0 && b.Stats().StreamsOpen == 0
	})
}

func TestTooManyStreams(t *testing.T) {
	a, _ := newNode(t, netem{}, Config{MaxStreams: 2})
	b, _ := newNode(t, netem{}, Config{})
	for range 2 {
		c, err := a.DialTimeout(b.LocalAddr().String(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	if _, err := a.DialTimeout(b.LocalAddr().String(), time.Second); !errors.Is(err, ErrTooManyStreams) {
		t.Fatalf("third dial: %v", err)
	}
}
