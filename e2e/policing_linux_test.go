//go:build linux

package e2e

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/vonproject/von/e2e/cluster"
	"github.com/vonproject/von/e2e/testbed"
)

// A stranger (h3, not a member) copying the ON's id gets no reserved service: under a
// best-effort flood its ON-marked packets are lost like best effort, while the member's
// are all delivered.
func TestStrangerPoliced(t *testing.T) {
	c := start(t, "testdata/ring.yaml")
	ctx := context.Background()
	if _, err := c.Vonctl(ctx, "reserve", "p", "--members", "h1,h2", "--rate", "8Mbit"); err != nil {
		t.Fatal(err)
	}
	id := get(t, c, "p").OnID
	tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	// ON packets all go to port 4750: tell member and stranger apart by path index.
	// The ON is not redundant, so its routers treat both indexes alike; the member
	// sends path 0, the stranger path 1.
	sink, err := c.TB.Listen(tctx, "h2", netip.AddrPortFrom(netip.IPv4Unspecified(), cluster.ONPort), cluster.ONKey)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = c.TB.Send(tctx, "h3", testbed.Flow{Dst: netip.AddrPortFrom(c.TB.Addr("h2"), 9100), Rate: 60_000_000, Duration: 3 * time.Second})
		done <- struct{}{}
	}()
	var stranger []testbed.SendStats
	go func() {
		stranger, _ = cluster.SendON(tctx, c.TB, cluster.ONFlow{From: "h3", To: "h2", ONID: id, Rate: 4_000_000, Duration: 3 * time.Second, FirstPath: 1})
		done <- struct{}{}
	}()
	member, err := cluster.SendON(tctx, c.TB, cluster.ONFlow{From: "h1", To: "h2", ONID: id, Rate: 4_000_000, Duration: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	<-done
	<-done
	time.Sleep(300 * time.Millisecond)
	gotMember := sink.Key(cluster.Key(id, 0)).Packets
	gotStranger := sink.Key(cluster.Key(id, 1)).Packets
	strangerLoss := 1 - float64(gotStranger)/float64(stranger[0].Packets)
	t.Logf("member sent %d, received %d; stranger sent %d, received %d (loss %.1f%%)",
		member[0].Packets, gotMember, stranger[0].Packets, gotStranger, 100*strangerLoss)
	if gotMember != member[0].Packets {
		t.Errorf("member's ON traffic: %d of %d arrived", gotMember, member[0].Packets)
	}
	if strangerLoss < 0.2 {
		t.Errorf("stranger lost only %.1f%% under the flood: it rode the reservation", 100*strangerLoss)
	}
}
