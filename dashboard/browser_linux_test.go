//go:build linux

package dashboard_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/vonproject/von/agent"
	"github.com/vonproject/von/managerd"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/reservation"
	"github.com/vonproject/von/topology"
)

// testbed is e2e/testdata/ring.yaml with every router interface addressed:
// three hosts around a ring of six routers, two disjoint cores between r1
// and r6. Its routers run simulated agents (agent.Config.Simulate).
type testbed struct {
	yaml   string
	ifaces map[string][]agent.SimulatedInterface
}

func ringTestbed() testbed {
	links := []struct {
		a, b string
		mbit int
		cost int
	}{
		{"h1:eth0", "r1:eth0", 100, 1}, {"h3:eth0", "r1:eth3", 100, 1},
		{"r1:eth1", "r2:eth0", 20, 1}, {"r2:eth1", "r3:eth0", 20, 1}, {"r3:eth1", "r6:eth0", 20, 1},
		{"r1:eth2", "r4:eth0", 20, 2}, {"r4:eth1", "r5:eth0", 20, 2}, {"r5:eth1", "r6:eth1", 20, 2},
		{"r6:eth2", "h2:eth0", 100, 1},
	}
	tb := testbed{ifaces: map[string][]agent.SimulatedInterface{}}
	var b strings.Builder
	b.WriteString("nodes:\n")
	for i, h := range []string{"h1", "h2", "h3"} {
		fmt.Fprintf(&b, "  - {name: %s, kind: host, address: 10.77.1.%d}\n", h, i+1)
	}
	for i := 1; i <= 6; i++ {
		fmt.Fprintf(&b, "  - {name: r%d, kind: router}\n", i)
	}
	b.WriteString("links:\n")
	for i, l := range links {
		aa, ba := fmt.Sprintf("10.77.0.%d", 4*i+1), fmt.Sprintf("10.77.0.%d", 4*i+2)
		fmt.Fprintf(&b, "  - {a: %s, b: %s, a_addr: %s, b_addr: %s, capacity: %dMbit, cost: %d}\n", l.a, l.b, aa, ba, l.mbit, l.cost)
		for _, end := range []struct{ ep, addr string }{{l.a, aa}, {l.b, ba}} {
			node, ifname, _ := strings.Cut(end.ep, ":")
			if strings.HasPrefix(node, "r") {
				tb.ifaces[node] = append(tb.ifaces[node], agent.SimulatedInterface{Name: ifname, Addrs: []string{end.addr + "/30"}, Speed: uint64(l.mbit) * 1e6})
			}
		}
	}
	tb.yaml = b.String()
	return tb
}

// chromium finds the browser: $VON_CHROMIUM, or what chromedp would start.
func chromium() string {
	if p := os.Getenv("VON_CHROMIUM"); p != "" {
		return p
	}
	for _, n := range []string{"chromium", "chromium-browser", "headless_shell", "headless-shell", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

// The dashboard in a real headless Chromium, following a manager with
// simulated agents: the page draws every node, shows a reservation made after
// it loaded and highlights its two paths, then drops it when it is released,
// all without a reload. It saves a screenshot to t.TempDir() and to
// $VON_DASHBOARD_SCREENSHOT if set.
func TestDashboardInChromium(t *testing.T) {
	bin := chromium()
	if bin == "" {
		why := "no chromium binary found (looked for $VON_CHROMIUM, chromium, chromium-browser, headless_shell, google-chrome): " +
			"apt-get install chromium (scripts/setup-debian.sh installs it, and CI runs that)"
		if v := os.Getenv("VON_TEST_REQUIRE_CHROMIUM"); v != "" && v != "0" {
			t.Fatal(why + "; VON_TEST_REQUIRE_CHROMIUM is set, so this fails instead of skipping")
		}
		t.Skip(why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 55*time.Second)
	defer cancel()
	dir := t.TempDir()
	tb := ringTestbed()

	// The manager, in this process: embedded etcd, gRPC, the HTTP listener.
	mctx, mstop := context.WithCancel(ctx)
	ready, httpReady := make(chan string, 1), make(chan string, 1)
	mdone := make(chan error, 1)
	go func() {
		mdone <- managerd.Run(mctx, managerd.Config{Listen: "127.0.0.1:0", Insecure: true, DataDir: filepath.Join(dir, "manager"),
			HTTPAddr: "127.0.0.1:0", Manager: reservation.Config{ID: "m1"},
			Ready: func(a string) { ready <- a }, HTTPReady: func(a string) { httpReady <- a }})
	}()
	t.Cleanup(func() {
		mstop()
		if err := <-mdone; err != nil {
			t.Errorf("manager: %v", err)
		}
	})
	var addr, web string
	for addr == "" || web == "" {
		select {
		case addr = <-ready:
		case web = <-httpReady:
		case err := <-mdone:
			mdone <- err
			t.Fatalf("manager: %v", err)
		case <-ctx.Done():
			t.Fatal("the manager did not start")
		}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	api := vonv1.NewReservationServiceClient(conn)
	if _, err := api.ApplyTopology(ctx, &vonv1.ApplyTopologyRequest{Source: &vonv1.ApplyTopologyRequest_Yaml{Yaml: tb.yaml}}); err != nil {
		t.Fatal(err)
	}
	topo, err := topology.Parse([]byte(tb.yaml))
	if err != nil {
		t.Fatal(err)
	}

	// A simulated agent on every router.
	actx, astop := context.WithCancel(ctx)
	adone := make(chan struct{}, len(tb.ifaces))
	t.Cleanup(func() {
		astop()
		for range tb.ifaces {
			<-adone
		}
	})
	for node, ifs := range tb.ifaces {
		a, err := agent.New(actx, agent.Config{Insecure: true, Node: node, StateDir: filepath.Join(dir, "agent-"+node),
			ManagerAddr: addr, ListenAddr: "127.0.0.1:0", RegisterInterval: time.Second, Simulate: ifs, Version: "test"})
		if err != nil {
			adone <- struct{}{}
			t.Fatal(err)
		}
		go func() { _ = a.Run(actx); adone <- struct{}{} }()
	}
	for live := 0; live < len(tb.ifaces); {
		resp, err := api.ListAgents(ctx, &vonv1.ListAgentsRequest{})
		if ctx.Err() != nil {
			t.Fatalf("agents not live: %v %v", resp, err)
		}
		live = 0
		for _, a := range resp.GetAgents() {
			if a.GetLive() {
				live++
			}
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The browser. Cancelling the allocator kills Chromium and waits for it,
	// on every way out of the test.
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(bin), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1500, 950))
	allocCtx, allocCancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(allocCancel)
	bctx, bcancel := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(bcancel)
	var (
		thrownMu sync.Mutex
		thrown   []string // exceptions the page's script threw
	)
	if err := chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*cdpruntime.EventExceptionThrown); ok && e.ExceptionDetails != nil {
			d := e.ExceptionDetails
			msg := fmt.Sprintf("%s:%d: %s", d.URL, d.LineNumber+1, d.Text)
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			thrownMu.Lock()
			thrown = append(thrown, msg)
			thrownMu.Unlock()
		}
	}); err != nil {
		t.Fatalf("start chromium %s: %v", bin, err)
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, scancel := context.WithTimeout(bctx, 15*time.Second)
		defer scancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	eval := func(expr string) []string {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}
	waitFor := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(15*time.Second))); err != nil {
			t.Fatalf("waiting for %s (%s): %v", what, expr, err)
		}
	}

	step("open the page", chromedp.Navigate("http://"+web+"/"))
	waitFor("the picture", `document.querySelector('#topo[data-rev] svg g.node') !== null`)
	waitFor("the agents", `document.querySelectorAll('#agents tr.live').length === 6`)
	// A mark that a reload would wipe.
	eval(`(window.vonNoReload = 'still here', [])`)

	drawn := eval(`[...document.querySelectorAll('#topo svg g.node')].map(g => g.dataset.node).sort()`)
	var want []string
	for _, n := range topo.Nodes {
		want = append(want, n.Name)
	}
	slices.Sort(want)
	if !slices.Equal(drawn, want) {
		t.Fatalf("the picture shows nodes %v, the topology has %v", drawn, want)
	}
	if n := eval(`[...document.querySelectorAll('#topo svg g.link')].map(g => g.dataset.link)`); len(n) != len(topo.Links) {
		t.Fatalf("the picture shows links %v, the topology has %d", n, len(topo.Links))
	}

	// A reservation made after the page loaded appears, and its paths are
	// highlighted when it is selected: path 0 and path 1 apart.
	res, err := api.Reserve(ctx, &vonv1.ReserveRequest{Name: "video", Members: []string{"h1", "h2"}, RateBps: 8_000_000, Redundant: true})
	if err != nil {
		t.Fatal(err)
	}
	r := res.GetReservation()
	// And a second one, not redundant, sharing r1-r2 with the first.
	if _, err := api.Reserve(ctx, &vonv1.ReserveRequest{Name: "backup", Members: []string{"h3", "h2"}, RateBps: 4_000_000}); err != nil {
		t.Fatal(err)
	}
	waitFor("the new ONs in the list", `document.querySelector('#ons tr[data-name="video"] td.state')?.textContent === 'committed' && `+
		`document.querySelector('#ons tr[data-name="backup"] td.state')?.textContent === 'committed'`)
	step("select it", chromedp.Click(chromedp.CSS(`#ons tr[data-name="video"]`)))
	waitFor("its paths", `document.querySelectorAll('#hl line.path').length > 0`)
	for i, p := range r.GetPaths()[0].GetPaths() {
		got := eval(fmt.Sprintf(`[...document.querySelectorAll('#hl line.path.p%d')].map(l => l.dataset.link)`, i))
		if !slices.Equal(got, p.GetLinks()) {
			t.Errorf("path %d is highlighted on %v, the ON's path %d is %v", i, got, i, p.GetLinks())
		}
	}
	styles := eval(`[...document.querySelectorAll('#hl line.path')].map(l => l.getAttribute('class') + ' ' + l.getAttribute('stroke') + ' ' + (l.getAttribute('stroke-dasharray') || 'solid'))`)
	var s0, s1 string
	for _, s := range styles {
		switch {
		case strings.HasPrefix(s, "path p0 "):
			s0 = strings.TrimPrefix(s, "path p0 ")
		case strings.HasPrefix(s, "path p1 "):
			s1 = strings.TrimPrefix(s, "path p1 ")
		}
	}
	if s0 == "" || s1 == "" || s0 == s1 {
		t.Errorf("path 0 (%q) and path 1 (%q) are not drawn apart", s0, s1)
	}
	// What it reserves colours the links it crosses; the figures are the title.
	ri, _ := topo.LinkIndex("r1-r2")
	waitFor("r1-r2 coloured", fmt.Sprintf(`document.querySelector('#d-%d-ab title').textContent.startsWith('r1 → r2 (link r1-r2): 12Mbit reserved of 16Mbit reservable (75%%)')`, ri))
	if got := eval(`[document.querySelector('#ons tr[data-name="video"] td.redundant').textContent, document.querySelector('#ons tr[data-name="video"] td.rate').textContent]`); !slices.Equal(got, []string{"yes", "8Mbit"}) {
		t.Errorf("the row says redundant, rate = %v", got)
	}
	shot, err := chromedp.Run(bctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(t.TempDir(), "dashboard.png"), os.Getenv("VON_DASHBOARD_SCREENSHOT")} {
		if p == "" {
			continue
		}
		if err := os.WriteFile(p, shot, 0o644); err != nil {
			t.Error(err)
		} else {
			t.Logf("screenshot: %s", p)
		}
	}

	// Released, it leaves the list and the picture.
	if _, err := api.Release(ctx, &vonv1.ReleaseRequest{Name: "video"}); err != nil {
		t.Fatal(err)
	}
	waitFor("the ON gone from the list", `document.querySelector('#ons tr[data-name="video"]') === null`)
	waitFor("its paths gone", `document.querySelectorAll('#hl line.path').length === 0`)
	waitFor("r1-r2 down to the second ON", fmt.Sprintf(`document.querySelector('#d-%d-ab title').textContent.includes(': 4Mbit reserved')`, ri))
	if got := eval(`[...document.querySelectorAll('#ons tbody tr')].map(tr => tr.dataset.name)`); !slices.Equal(got, []string{"backup"}) {
		t.Errorf("after the release the list shows %v, want [backup]", got)
	}
	if got := eval(`[String(window.vonNoReload)]`); !slices.Equal(got, []string{"still here"}) {
		t.Errorf("the page was reloaded: %v", got)
	}
	thrownMu.Lock()
	defer thrownMu.Unlock()
	if len(thrown) > 0 {
		t.Errorf("the page threw: %v", thrown)
	}
}
