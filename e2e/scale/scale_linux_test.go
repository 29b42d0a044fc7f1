//go:build linux

package scale

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// reserveMany has clients reserve n redundant ONs between random host pairs
// in parallel and returns the rate and the failures.
func (w *world) reserveMany(clients, n int, prefix string) (float64, []error) {
	var next atomic.Int64
	var mu sync.Mutex
	var errs []error
	t0 := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				h := len(w.net.hosts)
				a, b := (i*7919+c)%h, (i*104729+c*31+1)%h
				if a == b {
					b = (b + 1) % h
				}
				_, err := w.api.Reserve(context.Background(), &vonv1.ReserveRequest{Name: fmt.Sprintf("%s%d", prefix, i),
					Members: []string{w.net.hosts[a], w.net.hosts[b]}, RateBps: 1000, Redundant: true})
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return float64(n-len(errs)) / time.Since(t0).Seconds(), errs
}

// rawTxnRate is what the etcd does in guarded transactions (compare mod
// revision, put) from clients in parallel for d.
func (w *world) rawTxnRate(clients int, d time.Duration) float64 {
	var n atomic.Int64
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				k := fmt.Sprintf("/bench/raw/%d/%d", c, i)
				if _, err := w.cli.Txn(context.Background()).If(clientv3.Compare(clientv3.ModRevision(k), "=", 0)).Then(clientv3.OpPut(k, "x")).Commit(); err == nil {
					n.Add(1)
				}
			}
		})
	}
	wg.Wait()
	_, _ = w.cli.Delete(context.Background(), "/bench/raw/", clientv3.WithPrefix())
	return float64(n.Load()) / d.Seconds()
}

// etcdRequests is how many gRPC requests etcd has handled so far.
func (w *world) etcdRequests() float64 {
	resp, err := http.Get(w.etcdURL + "/metrics")
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "grpc_server_handled_total{") {
			v, _ := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			sum += v
		}
	}
	return sum
}

// idle measures, over d, the manager's CPU (fraction of one core) and the
// etcd requests per second, with nothing asked of the system.
func (w *world) idle(d time.Duration) (cpuFrac, etcdRate float64) {
	c0, r0 := cpu(w.t, w.mgr.Process.Pid), w.etcdRequests()
	time.Sleep(d)
	c1, r1 := cpu(w.t, w.mgr.Process.Pid), w.etcdRequests()
	return (c1 - c0).Seconds() / d.Seconds(), (r1 - r0) / d.Seconds()
}

// settled waits until every agent holds exactly the partitions the
// reservations ask of its router.
func (w *world) settled(want int, timeout time.Duration) time.Duration {
	t0 := time.Now()
	for {
		held := 0
		for _, a := range w.agents {
			held += a.Committed()
		}
		if held == want {
			return time.Since(t0)
		}
		if time.Since(t0) > timeout {
			w.t.Fatalf("agents hold %d partitions after %v, want %d", held, timeout, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// partitions is how many (router, ON) partitions the committed reservations need.
func (w *world) partitions() int {
	n, token := 0, ""
	for {
		resp, err := w.api.List(context.Background(), &vonv1.ListRequest{PageSize: 1000, PageToken: token,
			States: []vonv1.ReservationState{vonv1.ReservationState_RESERVATION_STATE_COMMITTED}})
		if err != nil {
			w.t.Fatal(err)
		}
		for _, r := range resp.GetReservations() {
			n += routerCount(r)
		}
		if token = resp.GetNextPageToken(); token == "" {
			return n
		}
	}
}

func routerCount(r *vonv1.Reservation) int {
	set := map[string]bool{}
	for _, pp := range r.GetPaths() {
		for _, p := range pp.GetPaths() {
			for _, n := range p.GetNodes() {
				if strings.HasPrefix(n, "r") {
					set[n] = true
				}
			}
		}
	}
	return len(set)
}

// restart kills the manager and starts it again; it returns how long until
// it leads and serves, and until every agent holding partitions has seen a
// refresh from it.
func (w *world) restart() (serving, refreshed time.Duration) {
	if path := os.Getenv("VON_SCALE_PROFILE"); path != "" {
		// The agents' side of a restart (this process): 30 s from the kill.
		if f, err := os.Create(path + ".agents-restart"); err == nil && pprof.StartCPUProfile(f) == nil {
			go func() {
				time.Sleep(30 * time.Second)
				pprof.StopCPUProfile()
				f.Close()
			}()
		}
	}
	kill(w.mgr)
	mark := time.Now()
	t0 := time.Now()
	serving = w.startManager()
	profiled := make(chan struct{})
	if path := os.Getenv("VON_SCALE_PROFILE"); path != "" {
		go func() { // the new manager's first seconds
			defer close(profiled)
			w.profile(path+".restart", 15*time.Second)
		}()
	} else {
		close(profiled)
	}
	defer func() { <-profiled }()
	for {
		all := true
		for _, a := range w.agents {
			if a.Committed() > 0 && !a.RefreshedSince(mark) { // refreshes go to routers that hold ONs
				all = false
				break
			}
		}
		if all {
			return serving, time.Since(t0)
		}
		if time.Since(t0) > 2*time.Minute {
			w.t.Fatal("agents not refreshed 2 minutes after the manager restarted")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// scenario is the scale run: reservations by 16 clients over simulated
// agents, then the committed set grown to ons by cloning, then idle,
// steady-state and restart measurements.
func scenario(t testing.TB, routers, reserves, ons int, report func(name string, v float64, unit string)) {
	w := newWorld(t, routers, "--partition-lease", "30s", "--reconcile", "30s", "--pprof")
	raw := w.rawTxnRate(16, 3*time.Second)
	c0m, c0e, c0s := cpu(t, w.mgr.Process.Pid), cpu(t, w.etcd.Process.Pid), cpu(t, os.Getpid())
	t0 := time.Now()
	if path := os.Getenv("VON_SCALE_PROFILE"); path != "" {
		go w.profile(path+".reserve", 5*time.Second)
	}
	rate, errs := w.reserveMany(16, reserves, "s")
	el := time.Since(t0).Seconds()
	report("reserve-manager-cpu-%", 100*(cpu(t, w.mgr.Process.Pid)-c0m).Seconds()/el, "")
	report("reserve-etcd-cpu-%", 100*(cpu(t, w.etcd.Process.Pid)-c0e).Seconds()/el, "")
	report("reserve-agents-cpu-%", 100*(cpu(t, os.Getpid())-c0s).Seconds()/el, "")
	if len(errs) > 0 {
		t.Fatalf("%d of %d reservations failed; first: %v", len(errs), reserves, errs[0])
	}
	report("raw-txn/s", raw, "")
	report("reserve/s", rate, "")
	report("reserve/raw-%", 100*rate/raw, "")
	hb, hbEtcd := w.idle(10 * time.Second)
	report("idle-manager-cpu-%", 100*hb, "")
	report("idle-etcd-req/s", hbEtcd, "")
	per := (ons - reserves + reserves - 1) / reserves
	for i := 0; i < reserves && per > 0; i++ {
		w.clone(fmt.Sprintf("s%d", i), per, i*per)
	}
	want := w.partitions()
	took := w.settled(want, 5*time.Minute)
	report("settle-s", took.Seconds(), "")
	if path := os.Getenv("VON_SCALE_PROFILE"); path != "" {
		w.profile(path, 20*time.Second)
	}
	cpuFrac, etcdRate := w.idle(30 * time.Second)
	report("steady-manager-cpu-%", 100*cpuFrac, "")
	report("steady-etcd-req/s", etcdRate, "")
	report("steady-etcd-load-%", 100*etcdRate/raw, "")
	report("manager-rss-MiB", float64(rss(t, w.mgr.Process.Pid))/(1<<20), "")
	// The first page of `vonctl list`: the median of five, before the heap
	// profile (which stops the manager's world) is taken.
	var lists []time.Duration
	for range 5 {
		t0 := time.Now()
		if _, err := w.api.List(context.Background(), &vonv1.ListRequest{}); err != nil {
			t.Fatal(err)
		}
		lists = append(lists, time.Since(t0))
	}
	slices.Sort(lists)
	report("list-first-page-ms", float64(lists[2].Microseconds())/1000, "")
	if path := os.Getenv("VON_SCALE_PROFILE"); path != "" {
		w.fetch("/debug/pprof/heap", path+".heap")
	}
	serving, refreshed := w.restart()
	report("restart-serving-s", serving.Seconds(), "")
	report("restart-refreshed-s", refreshed.Seconds(), "")
	w.settled(want, time.Minute)
}

// TestScale is the scale run at a size CI affords: 50 simulated routers,
// 100 reservations, 2,000 committed ONs. It asserts what must hold at any
// size: no reservation fails, every agent converges to its routers' state,
// and a restarted manager serves and refreshes every agent within 10 s.
func TestScale(t *testing.T) {
	got := map[string]float64{}
	scenario(t, 50, 100, 2000, func(name string, v float64, _ string) {
		got[name] = v
		t.Logf("%s = %.2f", name, v)
	})
	if got["restart-serving-s"] > 10 || got["restart-refreshed-s"] > 10 {
		t.Errorf("restart: serving after %.1f s, every agent refreshed after %.1f s (want ≤ 10 s)", got["restart-serving-s"], got["restart-refreshed-s"])
	}
}

// BenchmarkScale is the full-size run: VON_SCALE_ROUTERS simulated routers
// (default 1,000), 2,000 reservations by 16 clients, VON_SCALE_ONS committed
// ONs (default 100,000). Run it alone:
//
//	go test -run '^$' -bench BenchmarkScale -benchtime 1x -timeout 60m ./e2e/scale/
//
// VON_SCALE_PROFILE=PATH saves the manager's CPU and heap profiles there,
// VON_SCALE_LOG=PATH its log, and VON_SCALE_MANAGER_GOMEMLIMIT sets the
// manager's Go memory limit (GOMEMLIMIT) as a unit would.
func BenchmarkScale(b *testing.B) {
	for b.Loop() {
		scenario(b, envInt("VON_SCALE_ROUTERS", 1000), envInt("VON_SCALE_RESERVES", 2000), envInt("VON_SCALE_ONS", 100000),
			func(name string, v float64, _ string) { b.ReportMetric(v, name) })
	}
}

// profile saves a CPU profile of the manager over d ($VON_SCALE_PROFILE).
func (w *world) profile(path string, d time.Duration) {
	w.fetch(fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds())), path)
}

// fetch saves what the manager's debug listener serves at uri.
func (w *world) fetch(uri, path string) {
	resp, err := http.Get(fmt.Sprintf("http://%s%s", w.metricsAddr, uri))
	if err != nil {
		w.t.Fatal(err)
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	_, _ = io.Copy(f, resp.Body)
}
