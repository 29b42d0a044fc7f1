//go:build linux

package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vonproject/von/pki"
)

// Perf is a running vonperf (send or recv) for one member, its ON socket in the
// member's namespace.
type Perf struct {
	Member string
	c      *Cluster
	p      *proc
	out    bytes.Buffer
	once   sync.Once
}

// StartVonperf runs `vonperf MODE --manager … --on ON --member MEMBER --netns NS -o json
// ARGS…`; its stderr goes to vonperf-<member>.log in the cluster directory.
func (c *Cluster) StartVonperf(mode, on, member string, args ...string) (*Perf, error) {
	creds, err := c.Creds(pki.Identity{Kind: pki.KindUser, Name: member}) // a certificate naming the member
	if err != nil {
		return nil, err
	}
	argv := append(append([]string{mode, "--manager", c.ManagerAddr, "--on", on, "--member", member,
		"--netns", c.TB.Namespace(member), "-o", "json", "--log-level", "info"}, creds...), args...)
	pf := &Perf{Member: member, c: c}
	p, err := c.spawnTo("vonperf-"+member, &pf.out, filepath.Join(c.opts.BinDir, "vonperf"), argv...)
	if err != nil {
		return nil, err
	}
	pf.p = p
	return pf, nil
}

// Wait waits (at most d) for vonperf to exit and decodes its JSON summary into v.
func (p *Perf) Wait(d time.Duration, v any) error {
	select {
	case <-p.p.done:
	case <-time.After(d):
		p.Kill(syscall.SIGKILL)
		return fmt.Errorf("vonperf %s did not finish within %s", p.Member, d)
	}
	if p.p.err != nil {
		return fmt.Errorf("vonperf %s: %w (stdout %q)", p.Member, p.p.err, strings.TrimSpace(p.out.String()))
	}
	if err := json.Unmarshal(p.out.Bytes(), v); err != nil {
		return fmt.Errorf("vonperf %s summary: %w: %q", p.Member, err, p.out.String())
	}
	return nil
}

// Kill signals vonperf's process group and waits for it to exit.
func (p *Perf) Kill(sig syscall.Signal) {
	p.once.Do(func() { p.c.kill("vonperf-"+p.Member, p.p, sig) })
}

// Log is what vonperf wrote to stderr.
func (c *Cluster) PerfLog(member string) string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "vonperf-"+member+".log"))
	return string(b)
}

// RecvSummary is `vonperf recv -o json`.
type RecvSummary struct {
	Sent       uint64            `json:"sent"`
	Delivered  uint64            `json:"delivered"`
	Lost       uint64            `json:"lost"`
	Duplicates uint64            `json:"duplicates"`
	Reordered  uint64            `json:"reordered"`
	PerPath    map[string]uint64 `json:"per_path"`
	P50        float64           `json:"latency_p50_ms"`
	P99        float64           `json:"latency_p99_ms"`
	Epochs     []uint64          `json:"epochs"`
	Rejected   uint64            `json:"rejected"`
	Strangers  uint64            `json:"strangers"`
	Overflow   uint64            `json:"overflow"`
}

// SendSummary is `vonperf send -o json`.
type SendSummary struct {
	Sent       uint64   `json:"sent"`
	Errors     uint64   `json:"errors"`
	Epochs     []uint64 `json:"epochs"`
	Slipped    uint64   `json:"slipped"`
	SendErrors uint64   `json:"send_errors"`
	Trains     uint64   `json:"trains"`
}

// StreamWithCut streams h1→h2 with vonperf — 5040 messages of 1000 bytes at 840/s,
// 7.1 Mbit/s per copy, 0.9·R of an 8 Mbit ON — under a 60 Mbit best-effort flood from
// h3, cuts link `cut` for 3 s in the middle, and returns what both ends counted. It
// is the scenario of `make demo` and of the e2e test, on the ring topology.
func (c *Cluster) StreamWithCut(ctx context.Context, on, cut string, recvFor time.Duration) (RecvSummary, SendSummary, error) {
	return c.StreamWithCutAt(ctx, on, cut, recvFor, 840, 5040, 1000)
}

// StreamWithCutAt is StreamWithCut at another rate (messages/s), count and size.
func (c *Cluster) StreamWithCutAt(ctx context.Context, on, cut string, recvFor time.Duration, rate, count, size int) (RecvSummary, SendSummary, error) {
	return c.Stream(ctx, on, recvFor, rate, count, size, func() error {
		fctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		floodDone := Flood(fctx, c.TB, "h3", "h2", 60_000_000, 10*time.Second)
		defer func() { cancel(); floodDone() }()
		// Cut once the stream runs (the sender joins, waits for h2, then paces 6 s).
		time.Sleep(3 * time.Second)
		if err := c.TB.Cut(ctx, cut); err != nil {
			return err
		}
		time.Sleep(3 * time.Second)
		return c.TB.Restore(ctx, cut)
	})
}

// Stream runs vonperf h1→h2 on ON on (count messages of size bytes at rate/s,
// the receiver listening for recvFor), calls during while it runs, and returns
// what both ends counted.
func (c *Cluster) Stream(ctx context.Context, on string, recvFor time.Duration, rate, count, size int, during func() error) (RecvSummary, SendSummary, error) {
	recv, err := c.StartVonperf("recv", on, "h2", "--duration", recvFor.String())
	if err != nil {
		return RecvSummary{}, SendSummary{}, err
	}
	defer recv.Kill(syscall.SIGKILL)
	send, err := c.StartVonperf("send", on, "h1", "--to", "h2", "--rate", strconv.Itoa(rate), "--count", strconv.Itoa(count), "--size", strconv.Itoa(size))
	if err != nil {
		return RecvSummary{}, SendSummary{}, err
	}
	defer send.Kill(syscall.SIGKILL)
	if during != nil {
		if err := during(); err != nil {
			return RecvSummary{}, SendSummary{}, err
		}
	}
	var ss SendSummary
	if err := send.Wait(30*time.Second, &ss); err != nil {
		return RecvSummary{}, SendSummary{}, fmt.Errorf("%w\n%s", err, c.PerfLog("h1"))
	}
	var rs RecvSummary
	if err := recv.Wait(recvFor+20*time.Second, &rs); err != nil {
		return RecvSummary{}, SendSummary{}, fmt.Errorf("%w\n%s", err, c.PerfLog("h2"))
	}
	return rs, ss, nil
}
