//go:build linux

package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/vonproject/von/pki"
)

// Link is a running `vonlink up` for one member, its interface in the member's
// namespace.
type Link struct {
	Member string
	// Address is the member's overlay address, Prefix the ON's.
	Address, Prefix string
	c               *Cluster
	p               *proc
	out             lockedBuffer
	once            sync.Once
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// StartVonlink runs `vonlink up --on ON --member MEMBER --netns NS -o json ARGS…`
// with a certificate naming the member, and waits (at most 30 s) for its first line.
func (c *Cluster) StartVonlink(on, member string, args ...string) (*Link, error) {
	creds, err := c.Creds(pki.Identity{Kind: pki.KindUser, Name: member})
	if err != nil {
		return nil, err
	}
	argv := append(append([]string{"up", "--manager", c.ManagerAddr, "--on", on, "--member", member,
		"--netns", c.TB.Namespace(member), "-o", "json", "--control", filepath.Join(c.Dir, "vonlink-"+member+".sock")}, creds...), args...)
	l := &Link{Member: member, c: c}
	p, err := c.spawnTo("vonlink-"+member, &l.out, filepath.Join(c.opts.BinDir, "vonlink"), argv...)
	if err != nil {
		return nil, err
	}
	l.p = p
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st struct{ Address, Prefix string }
		dec := json.NewDecoder(bytes.NewReader(l.out.bytes()))
		if dec.Decode(&st) == nil && st.Address != "" {
			a, _, _ := bytes.Cut([]byte(st.Address), []byte("/"))
			l.Address, l.Prefix = string(a), st.Prefix
			return l, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("vonlink %s exited: %v\n%s", member, p.err, c.Log("vonlink-"+member))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			l.Stop(syscall.SIGKILL)
			return nil, fmt.Errorf("vonlink %s not up within 30 s\n%s", member, c.Log("vonlink-"+member))
		}
	}
}

// Stop signals vonlink's process group and waits for it to exit.
func (l *Link) Stop(sig syscall.Signal) {
	l.once.Do(func() { l.c.kill("vonlink-"+l.Member, l.p, sig) })
}

// ExitErr is what the process's Wait returned, once it exited.
func (l *Link) ExitErr() error {
	<-l.p.done
	return l.p.err
}
