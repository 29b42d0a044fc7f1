package gossipnet

import (
	"fmt"
	"io"
	"log"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// logBook collects memberlist's log lines of all nodes.
type logBook struct {
	mu    sync.Mutex
	lines []string
	echo  io.Writer
}

func (l *logBook) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, string(p))
	if l.echo != nil {
		_, _ = l.echo.Write(p)
	}
	return len(p), nil
}

func (l *logBook) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.lines)
}

// count returns the lines from index `from` on containing substr logged by the
// named nodes (all nodes when none are named).
func (l *logBook) count(from int, substr string, by ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines[from:] {
		if !strings.Contains(line, substr) {
			continue
		}
		for _, name := range by {
			if strings.HasPrefix(line, name+" ") {
				n++
			}
		}
		if len(by) == 0 {
			n++
		}
	}
	return n
}

func TestMemberlistOverConduit(t *testing.T) {
	const n = 10
	em := netem{dropCall: 0.1, reorder: 0.05} // 10% of datagrams lost on both paths
	book := &logBook{}
	if os.Getenv("GOSSIPNET_TEST_LOG") != "" {
		book.echo = os.Stderr
	}
	lists := make([]*memberlist.Memberlist, n)
	trs := make([]*Transport, n)
	for i := range n {
		tr, _ := newNode(t, em, Config{})
		trs[i] = tr
		c := memberlist.DefaultLANConfig()
		c.Name = fmt.Sprintf("node-%d", i)
		c.Transport = tr
		c.Label = "von-test"
		c.UDPBufferSize = tr.PacketPayload()
		c.ProbeInterval = 200 * time.Millisecond
		c.ProbeTimeout = 100 * time.Millisecond
		c.GossipInterval = 50 * time.Millisecond
		c.PushPullInterval = 2 * time.Second
		c.TCPTimeout = 2 * time.Second
		c.SuspicionMult = 4
		c.SuspicionMaxTimeoutMult = 2
		c.GossipToTheDeadTime = 2 * time.Second
		c.Logger = log.New(book, c.Name+" ", log.Lmicroseconds)
		m, err := memberlist.Create(c)
		if err != nil {
			t.Fatal(err)
		}
		lists[i] = m
		t.Cleanup(func() { _ = m.Shutdown() })
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, tr := range trs {
				t.Logf("node-%d transport: %+v", i, tr.Stats())
			}
			book.mu.Lock()
			defer book.mu.Unlock()
			for _, l := range book.lines {
				if strings.Contains(l, "[ERR]") || strings.Contains(l, "[WARN]") || strings.Contains(l, "[INFO]") {
					t.Log(strings.TrimSpace(l))
				}
			}
		}
	})
	start := time.Now()
	seed := lists[0].LocalNode().Address()
	for i := 1; i < n; i++ {
		if _, err := lists[i].Join([]string{seed}); err != nil {
			t.Fatalf("node-%d join: %v", i, err)
		}
	}
	allSee := func(k int, alive []*memberlist.Memberlist) func() bool {
		return func() bool {
			for _, m := range alive {
				if m.NumMembers() != k {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, 10*time.Second, "all 10 members seen by all", allSee(n, lists))
	t.Logf("converged on %d members in %v", n, time.Since(start))
	if st := trs[0].Stats(); st.StreamsAccepted < n-1 || st.PacketDuplicates == 0 {
		t.Fatalf("seed transport stats %+v: want >= %d accepted streams (joins) and deduplicated packets", st, n-1)
	}

	// Graceful leave.
	start = time.Now()
	mark := book.len()
	if err := lists[n-1].Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	_ = lists[n-1].Shutdown()
	waitFor(t, 5*time.Second, "node-9 leaves", allSee(n-1, lists[:n-1]))
	if k := book.count(mark, "Marking node-9 as failed"); k != 0 {
		t.Fatalf("node-9 left gracefully but was marked failed %d times", k)
	}
	t.Logf("leave seen by all in %v", time.Since(start))

	// Kill: shut down without leaving; the others must find it dead.
	start = time.Now()
	mark = book.len()
	_ = lists[n-2].Shutdown()
	waitFor(t, 10*time.Second, "node-8 declared dead", allSee(n-2, lists[:n-2]))
	live := make([]string, n-2)
	for i := range live {
		live[i] = fmt.Sprintf("node-%d", i)
	}
	if book.count(mark, "Marking node-8 as failed", live...) == 0 {
		t.Fatal("node-8 gone but no live node marked it failed")
	}
	// Under loss memberlist may suspect a live node; it refutes and stays.
	for _, name := range live {
		if k := book.count(0, "Marking "+name+" as failed", live...); k != 0 {
			t.Logf("note: live %s was falsely marked failed %d times (it refuted)", name, k)
		}
	}
	t.Logf("death detected by all in %v", time.Since(start))
}
