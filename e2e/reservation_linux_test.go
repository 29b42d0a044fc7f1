//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vonproject/von/e2e/cluster"
	"github.com/vonproject/von/e2e/testbed"
)

type getJSON struct {
	Name         string    `json:"name"`
	OnID         uint32    `json:"on_id"`
	State        string    `json:"state"`
	RateBps      uint64    `json:"rate_bps"`
	LeaseExpires time.Time `json:"lease_expires"`
	Members      []struct {
		Name, Address string
	} `json:"members"`
	Links []struct {
		Link, Direction string
		RateBps         uint64 `json:"rate_bps"`
		Copies          uint32 `json:"copies"`
	} `json:"links"`
	Paths []struct {
		From, To string
		Paths    []struct {
			Nodes []string `json:"nodes"`
		} `json:"paths"`
	} `json:"paths"`
}

func get(t *testing.T, c *cluster.Cluster, name string) getJSON {
	t.Helper()
	out, err := c.Vonctl(context.Background(), "get", name, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var g getJSON
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatalf("get -o json: %v\n%s", err, out)
	}
	return g
}

// htbClasses returns the ON classes (rate = ceil leaves other than best effort) on
// every router interface of the testbed, as "router:iface" → count.
func htbClasses(t *testing.T, tb *testbed.Testbed) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, n := range tb.Plan.Nodes {
		if n.Forward {
			for _, l := range tb.Plan.Links {
				for _, e := range []testbed.EndPlan{l.A, l.B} {
					if e.Node != n.Name {
						continue
					}
					s, err := tb.Exec(context.Background(), n.Name, "tc", "class", "show", "dev", e.Iface)
					if err != nil {
						t.Fatal(err)
					}
					for _, line := range strings.Split(s, "\n") {
						// ON classes are 7656:3 and up; 7656:1 root, 7656:2 best effort.
						if strings.HasPrefix(line, "class htb 7656:") && !strings.HasPrefix(line, "class htb 7656:1 ") && !strings.HasPrefix(line, "class htb 7656:2 ") {
							out[n.Name+":"+e.Iface]++
						}
					}
				}
			}
		}
	}
	return out
}
