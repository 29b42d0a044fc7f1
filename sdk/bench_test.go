package sdk

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/vonproject/von/seal"
	"github.com/vonproject/von/wire"
)

// BenchmarkSendRecv is the SDK end to end on loopback: h1 sends 256-byte messages to
// h2 over a redundant ON (both copies: seal once, two datagrams in one sendmmsg; the
// receiver reads both, drops one in the window, opens one), h2 receives each once.
// Reported: messages/s delivered (both copies carried).
func BenchmarkSendRecv(b *testing.B) {
	addr, c := startManager(b)
	reserve(b, c, "bench", true, "h1", "h2")
	vs := joinWith(b, Config{Manager: addr, Insecure: true, ON: "bench", ListenAddr: "127.0.0.1:0", RecvBuffer: 1 << 16}, "h1", "h2")
	msg := make([]byte, 256)
	ctx := context.Background()
	done := make(chan int)
	cpu0 := cpuTime()
	b.ResetTimer()
	go func() {
		n := 0
		for n < b.N {
			select {
			case <-vs["h2"].inbox: // Recv without a per-call context
				n++
				continue
			default:
			}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := vs["h2"].Recv(rctx)
			cancel()
			if err != nil {
				break // the rest was lost (socket buffer overrun)
			}
			n++
		}
		done <- n
	}()
	// Pace by the receiver: at most ~4k messages in flight, so losses in the
	// socket buffers do not inflate the figure.
	for i := range b.N {
		for uint64(i)-vs["h2"].Stats().Delivered > 4096 {
			time.Sleep(50 * time.Microsecond)
		}
		if err := vs["h1"].Send(ctx, "h2", msg); err != nil {
			b.Fatal(err)
		}
	}
	got := <-done
	b.StopTimer()
	el := b.Elapsed().Seconds()
	b.ReportMetric(float64(got)/el, "msgs/s")
	// Per core: messages per CPU-second the whole process spent (sender, receiver, the
	// kernel work on their behalf, and the idle manager beside them).
	b.ReportMetric(float64(got)/(cpuTime()-cpu0).Seconds(), "msgs/cpu-s")
	b.ReportMetric(float64(b.N-got), "lost")
	st := vs["h2"].Stats()
	b.ReportMetric(float64(st.Duplicates)/float64(max(st.Delivered, 1)), "dups/msg")
}

// BenchmarkDataPath is the SDK's own per-message work without the kernel: the sender
// seals once and makes the path-1 copy, the receiver identifies the sender, skips the
// duplicate in the window, opens and queues the message once. One goroutine does
// both sides, so msgs/s is per core.
func BenchmarkDataPath(b *testing.B) {
	addr, c := startManager(b)
	reserve(b, c, "dp", true, "h1", "h2")
	vs := joinWith(b, Config{Manager: addr, Insecure: true, ON: "dp", ListenAddr: "127.0.0.1:0", RecvBuffer: 1024}, "h1", "h2")
	tx, rx := vs["h1"], vs["h2"]
	from := tx.LocalAddr()
	msg := make([]byte, 256)
	p0 := make([]byte, 0, 2048)
	p1 := make([]byte, 0, 2048)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		s, epoch, err := tx.sealer()
		if err != nil {
			b.Fatal(err)
		}
		pk, err := s.Seal(p0[:0], wire.Header{ONID: tx.onID, KeyEpoch: uint16(epoch), Seq: tx.seq.Add(1)}, msg)
		if err != nil {
			b.Fatal(err)
		}
		cp := append(p1[:0], pk...)
		_ = seal.SetPath(cp, 1)
		now := time.Now()
		rx.handle(pk, from, now)
		rx.handle(cp, from, now)
		<-rx.inbox
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	if st := rx.Stats(); st.Duplicates < uint64(b.N) {
		b.Fatalf("duplicates %d < %d", st.Duplicates, b.N)
	}
}

// BenchmarkRawUDPLoopback is the kernel's ceiling for BenchmarkSendRecv: two plain
// sockets on loopback, 288-byte datagrams (a sealed 256-byte message) in sendmmsg and
// recvmmsg batches of 64, two datagrams per op (the two copies). No SDK at all.
func BenchmarkRawUDPLoopback(b *testing.B) {
	rc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer rc.Close()
	sc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	_ = rc.SetReadBuffer(8 << 20)
	rp, sp := ipv4.NewPacketConn(rc), ipv4.NewPacketConn(sc)
	done := make(chan int)
	go func() {
		ms := make([]ipv4.Message, 64)
		for i := range ms {
			ms[i].Buffers = [][]byte{make([]byte, 2048)}
		}
		n := 0
		for n < 2*b.N {
			_ = rc.SetReadDeadline(time.Now().Add(time.Second))
			k, err := rp.ReadBatch(ms, 0)
			if err != nil {
				break
			}
			n += k
		}
		done <- n
	}()
	out := make([]ipv4.Message, 64)
	for i := range out {
		out[i] = ipv4.Message{Buffers: [][]byte{make([]byte, 288)}, Addr: rc.LocalAddr()}
	}
	b.ResetTimer()
	for sent := 0; sent < 2*b.N; {
		// Stay within the receive buffer, as the SDK benchmark does.
		k, err := sp.WriteBatch(out[:min(64, 2*b.N-sent)], 0)
		if err != nil {
			b.Fatal(err)
		}
		sent += k
	}
	got := <-done
	b.ReportMetric(float64(got)/2/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(2*b.N-got), "lost")
}

// cpuTime is the process's user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
