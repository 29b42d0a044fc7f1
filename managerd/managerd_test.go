package managerd

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"go.uber.org/goleak"

	"github.com/vonproject/von/etcdembed"
	vonv1 "github.com/vonproject/von/proto/von/v1"
	"github.com/vonproject/von/reservation"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const direct = `nodes:
  - {name: h1, kind: host, address: 10.77.1.1}
  - {name: h2, kind: host, address: 10.77.1.2}
links:
  - {a: h1, b: h2, capacity: 100Mbit}
`

// With --etcd-endpoints the manager keeps its state in that cluster, not in a
// data dir of its own.
func TestDaemonExternalEtcd(t *testing.T) {
	e, err := etcdembed.Start(context.Background(), etcdembed.Options{Dir: t.TempDir(), NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ready, httpReady := make(chan string, 1), make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Listen: "127.0.0.1:0", Insecure: true, EtcdEndpoints: e.Endpoints, HTTPAddr: "127.0.0.1:0",
			Ready: func(a string) { ready <- a }, HTTPReady: func(a string) { httpReady <- a }})
	}()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	case <-time.After(20 * time.Second):
		t.Fatal("daemon not ready")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := vonv1.NewReservationServiceClient(conn)
	if _, err := c.ApplyTopology(ctx, &vonv1.ApplyTopologyRequest{Source: &vonv1.ApplyTopologyRequest_Yaml{Yaml: direct}}); err != nil {
		t.Fatal(err)
	}
	resp, err := cli.Get(ctx, reservation.DefaultPrefix+"/topology")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != direct {
		t.Fatalf("topology not in the external etcd: %v %v", resp, err)
	}
	// Reserving needs leadership: wait for it through the API.
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := c.Reserve(ctx, &vonv1.ReserveRequest{Name: "x", Members: []string{"h1", "h2"}, RateBps: 1000})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The etcd_* series linked into this process describe no etcd the manager
	// runs (here they are the test's etcd's): with an external etcd they are
	// not served, the external etcd serves its own.
	body := scrape(t, ctx, <-httpReady)
	if strings.Contains(body, "etcd_server_has_leader") || strings.Contains(body, "\netcd_") {
		t.Errorf("a manager on an external etcd serves etcd_* series:\n%.2000s", body)
	}
	if !strings.Contains(body, "\nvon_manager_leader 1\n") {
		t.Errorf("no von_manager_leader 1 on the leader:\n%.2000s", body)
	}
}

// scrape returns what addr serves at /metrics, failing unless it is 200.
func scrape(t *testing.T, ctx context.Context, addr string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %.500q", resp.StatusCode, b)
	}
	return string(b)
}

// One HTTP listener serves the dashboard, /metrics, /healthz, /readyz and,
// with Pprof, the profiler.
func TestHTTPListener(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rctx, stop := context.WithCancel(ctx)
	ready, httpReady := make(chan string, 1), make(chan string, 1)
	done := make(chan error, 1)
	var logs lockedBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	go func() {
		done <- Run(rctx, Config{Listen: "127.0.0.1:0", Insecure: true, DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", Pprof: true,
			Manager: reservation.Config{ID: "m-http", Logger: log}, Ready: func(a string) { ready <- a }, HTTPReady: func(a string) { httpReady <- a }})
	}()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	var addr string
	select {
	case addr = <-httpReady:
		<-ready
	case err := <-done:
		t.Fatal(err)
	case <-ctx.Done():
		t.Fatal("daemon not ready")
	}
	get := func(path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	for {
		code, body := get("/readyz")
		if code == 200 {
			if body != "ready: m-http leads (this manager)\n" {
				t.Errorf("/readyz: %q", body)
			}
			break
		}
		if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, "not ready: ") || ctx.Err() != nil {
			t.Fatalf("/readyz: %d %q", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The dashboard learns the leader at its next poll (every 2 s).
	for {
		code, body := get("/api/state")
		if code == 200 && strings.Contains(body, `"leader":"m-http"`) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("/api/state: %d %.300q", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for path, want := range map[string]string{
		"/metrics":          "von_manager_reservations",
		"/":                 "<title>VON dashboard</title>",
		"/dashboard.js":     "EventSource",
		"/debug/pprof/":     "goroutine",
		"/debug/pprof/heap": "", // any profile
	} {
		if code, body := get(path); code != 200 || !strings.Contains(body, want) {
			t.Errorf("%s: %d, want %q in %.200q", path, code, want, body)
		}
	}
	// The embedded etcd's own series are on the manager's /metrics (what the
	// etcd alerts and the dashboard's etcd row query), beside the manager's,
	// and no family twice (the Go and process collectors are on both
	// registries).
	body := scrape(t, ctx, addr)
	for _, want := range []string{
		"\netcd_server_has_leader 1\n",
		"\netcd_server_leader_changes_seen_total ",
		"\netcd_disk_wal_fsync_duration_seconds_bucket{le=",
		"\netcd_disk_backend_commit_duration_seconds_bucket{le=",
		"\nvon_manager_leader 1\n",
		"\nvon_manager_agents{state=\"down\"} 0\n",
		"\nvon_manager_reservations_degraded{redundant=\"false\"} 0\n",
		"\nvon_manager_lease_expiries_total 0\n",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics has no %q", strings.TrimSpace(want))
		}
	}
	for _, family := range []string{"go_goroutines", "process_resident_memory_bytes", "etcd_server_has_leader"} {
		if n := strings.Count(body, "# TYPE "+family+" "); n != 1 {
			t.Errorf("/metrics has %d families %s, want 1", n, family)
		}
	}
	if l := logs.String(); strings.Contains(l, "error gathering metrics") {
		t.Errorf("gathering /metrics failed (a series served twice?):\n%s", l)
	}
}

// lockedBuffer is a log's output, written from many goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// /readyz is 503 with the reason while no manager leads or etcd does not answer.
func TestReadyzNotReady(t *testing.T) {
	e, err := etcdembed.Start(context.Background(), etcdembed.Options{Dir: t.TempDir(), NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			e.Close()
		}
	}()
	cli, err := e.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	m := reservation.New(cli, reservation.Config{}) // never runs: nobody campaigns
	defer m.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.StateCollector())
	mux := httpMux(reg, slog.New(slog.DiscardHandler), m, "me", http.NotFoundHandler(), false)
	metrics := func() string {
		t.Helper()
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if rec.Code != 200 {
			t.Fatalf("/metrics: %d %.300q", rec.Code, rec.Body.String())
		}
		return rec.Body.String()
	}
	if body := metrics(); !strings.Contains(body, `von_manager_reservations{state="committed"} 0`) || !strings.Contains(body, "\nvon_manager_leader 0\n") {
		t.Errorf("/metrics of a manager that does not lead:\n%s", body)
	}
	check := func(want string) {
		t.Helper()
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/readyz: %d %q, want 503 saying %q", rec.Code, rec.Body.String(), want)
		}
	}
	check("not ready: no manager leads")
	e.Close()
	closed = true
	check("not ready: etcd does not answer")
	// What needs etcd is left out of /metrics; the rest is still served.
	if body := metrics(); strings.Contains(body, "von_manager_reservations{") || !strings.Contains(body, "\nvon_manager_leader 0\n") {
		t.Errorf("/metrics with etcd gone: want von_manager_leader and no reservation counts:\n%s", body)
	}
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != 200 {
		t.Errorf("/healthz with etcd gone: %d (the process is up)", rec.Code)
	}
	if rec := httptest.NewRecorder(); true {
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
		if rec.Code != 404 {
			t.Errorf("/debug/pprof/ without Pprof: %d", rec.Code)
		}
	}
}

// --http and its older name --metrics are one listener.
func TestHTTPAndMetricsAgree(t *testing.T) {
	err := Run(context.Background(), Config{Listen: "127.0.0.1:0", Insecure: true, DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:9400", MetricsAddr: "127.0.0.1:9401"})
	if err == nil || !strings.Contains(err.Error(), "one listener") {
		t.Fatalf("two addresses: %v", err)
	}
}
