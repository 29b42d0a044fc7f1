// Package managerd is von-manager's daemon: it wires the store (an embedded etcd
// or an external cluster), a reservation.Manager, its gRPC server with mutual TLS,
// and the HTTP listener (the dashboard, metrics, health and readiness), and runs
// them until stopped.
package managerd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/vonproject/von/dashboard"
	"github.com/vonproject/von/etcdembed"
	"github.com/vonproject/von/pki"
	"github.com/vonproject/von/reservation"
)

// Config is what von-manager is started with.
type Config struct {
	Listen        string   // gRPC address for vonctl, the SDK and agents
	DataDir       string   // embedded etcd data (when EtcdEndpoints is empty)
	EtcdEndpoints []string // external etcd cluster instead of the embedded one
	// HTTPAddr is the one HTTP listener (--http): the dashboard at /
	// (package dashboard), Prometheus /metrics, /healthz, /readyz, and with
	// Pprof Go's /debug/pprof/. Empty: no HTTP listener.
	HTTPAddr string
	// MetricsAddr is the older name of HTTPAddr (--metrics): either may be
	// given, or both if they agree.
	MetricsAddr string
	Pprof       bool // also serve Go's /debug/pprof/ on HTTPAddr (profiling)
	Manager     reservation.Config
	// Ready, if set, is called with the bound gRPC address once serving.
	Ready func(addr string)
	// HTTPReady, if set, is called with the bound HTTP address once serving.
	HTTPReady func(addr string)
	// TLS is the manager's certificate (kind manager): every client must
	// present one from the same CA and is authorized by it. Insecure must be
	// set instead to serve plaintext to anyone; one of the two is required.
	TLS      *pki.Material
	Insecure bool
}

// Run runs a manager until ctx ends: etcd (embedded unless endpoints are given),
// the gRPC services, the leader loops and the metrics endpoint.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Manager.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
		cfg.Manager.Logger = log
	}
	switch {
	case cfg.TLS == nil && !cfg.Insecure:
		return fmt.Errorf("von-manager: %w: give a manager certificate, or choose insecure (plaintext) explicitly", pki.ErrNoCredentials)
	case cfg.TLS != nil && cfg.Insecure:
		return errors.New("von-manager: TLS and insecure together: choose one")
	case cfg.TLS != nil && cfg.TLS.Identity().Kind != pki.KindManager:
		return fmt.Errorf("von-manager: the certificate names %s, not a manager", cfg.TLS.Identity())
	}
	cfg.Manager.TLS = cfg.TLS
	httpAddr := cfg.HTTPAddr
	switch {
	case httpAddr == "":
		httpAddr = cfg.MetricsAddr
	case cfg.MetricsAddr != "" && cfg.MetricsAddr != httpAddr:
		return fmt.Errorf("von-manager: --http %s and --metrics %s: they are one listener, give one address", httpAddr, cfg.MetricsAddr)
	}
	endpoints := cfg.EtcdEndpoints
	embedded := len(endpoints) == 0
	if embedded {
		if cfg.DataDir == "" {
			return errors.New("von-manager: give --data-dir for the embedded etcd, or --etcd-endpoints")
		}
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("von-manager: data dir: %w", err)
		}
		e, err := etcdembed.Start(ctx, etcdembed.Options{Dir: filepath.Join(cfg.DataDir, "etcd"), Logger: log})
		if err != nil {
			return err
		}
		defer e.Close()
		endpoints = e.Endpoints
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return fmt.Errorf("von-manager: etcd client: %w", err)
	}
	defer cli.Close()
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	_, err = cli.Status(sctx, endpoints[0])
	cancel()
	if err != nil {
		return fmt.Errorf("von-manager: etcd at %v not reachable: %w", endpoints, err)
	}

	if cfg.Manager.ID == "" {
		// Stable across restarts of this manager, distinct between managers.
		host, _ := os.Hostname()
		cfg.Manager.ID = host + "/" + cfg.Listen
		if len(cfg.EtcdEndpoints) == 0 {
			cfg.Manager.ID += "/" + cfg.DataDir
		}
	}
	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("von-manager: listen %s: %w", cfg.Listen, err)
	}
	defer lis.Close()
	if cfg.Manager.Advertise == "" {
		cfg.Manager.Advertise = advertised(lis.Addr())
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Manager.Metrics = reservation.NewMetrics(reg)
	m := reservation.New(cli, cfg.Manager)
	defer m.Close()
	reg.MustRegister(m.StateCollector())

	gs := reservation.NewGRPCServer(m, cfg.TLS)
	errc := make(chan error, 3)
	go func() { errc <- gs.Serve(lis) }()
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	var hs *http.Server
	dashDone := make(chan struct{})
	if httpAddr != "" {
		hl, err := net.Listen("tcp", httpAddr)
		if err != nil {
			gs.Stop()
			return fmt.Errorf("von-manager: http listen %s: %w", httpAddr, err)
		}
		dash := dashboard.New(dashboard.FromManager(m), dashboard.Options{Logger: log})
		mux := httpMux(metricsGatherer(reg, embedded), log, m, cfg.Manager.ID, dash, cfg.Pprof)
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { errc <- hs.Serve(hl) }()
		go func() { _ = dash.Run(rctx); close(dashDone) }()
		if cfg.HTTPReady != nil {
			cfg.HTTPReady(hl.Addr().String())
		}
	} else {
		close(dashDone)
	}
	runDone := make(chan struct{})
	go func() { errc <- m.Run(rctx); close(runDone) }()
	security := "insecure (plaintext, no authorization)"
	if cfg.TLS != nil {
		security = "mutual TLS as " + cfg.TLS.Identity().String()
	}
	log.Info("von-manager serving", "listen", lis.Addr().String(), "etcd", endpoints, "http", httpAddr, "security", security)
	if cfg.Ready != nil {
		cfg.Ready(lis.Addr().String())
	}
	select {
	case <-ctx.Done():
		err = nil
	case err = <-errc:
		if errors.Is(err, http.ErrServerClosed) || errors.Is(err, grpc.ErrServerStopped) {
			err = nil
		}
	}
	rcancel()
	<-runDone // the manager resigns (revokes its session) before the etcd client closes
	<-dashDone
	stopped := make(chan struct{})
	go func() { gs.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		gs.Stop()
	}
	if hs != nil {
		_ = hs.Close()
	}
	log.Info("von-manager stopped")
	return err
}

// metricsGatherer is what /metrics serves: reg and, with the embedded etcd
// (embedded), that etcd's own series. Its server registers them on
// Prometheus' default registry; only the etcd_* families are taken from
// there: the default registry has Go and process collectors too, the same
// series as reg's (a family served twice fails the scrape). With an external
// etcd none are: the etcd_* series linked into this process then describe no
// running server (etcd_server_has_leader would read 0 and fire VONEtcdNoLeader),
// and the external etcd serves its own.
func metricsGatherer(reg *prometheus.Registry, embedded bool) prometheus.Gatherer {
	if !embedded {
		return reg
	}
	return prometheus.Gatherers{reg, prometheus.GathererFunc(onlyPrefix(prometheus.DefaultGatherer.Gather, "etcd_"))}
}

// onlyPrefix keeps the metric families gather returns whose name starts with
// prefix. (Generic so as not to name client_model's MetricFamily, which is
// not a direct dependency of this module.)
func onlyPrefix[F interface{ GetName() string }](gather func() ([]F, error), prefix string) func() ([]F, error) {
	return func() ([]F, error) {
		mfs, err := gather()
		return slices.DeleteFunc(mfs, func(f F) bool { return !strings.HasPrefix(f.GetName(), prefix) }), err
	}
}

// httpMux is the HTTP listener's routes: the dashboard at /, /metrics,
// /healthz (the process is up), /readyz (a leader is known and etcd answers;
// 503 with why not) and, with withPprof, /debug/pprof/. A series that cannot
// be read (a standby's counts while etcd does not answer) is left out of
// /metrics and logged; the rest are still served, etcd's own among them.
func httpMux(metrics prometheus.Gatherer, log *slog.Logger, m *reservation.Manager, id string, dash http.Handler, withPprof bool) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
		defer cancel()
		leader, err := m.Leader(ctx)
		switch {
		case err != nil:
			http.Error(w, "not ready: etcd does not answer: "+err.Error(), http.StatusServiceUnavailable)
		case leader == "":
			http.Error(w, "not ready: no manager leads (an election is under way)", http.StatusServiceUnavailable)
		default:
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			me := ""
			if leader == id {
				me = " (this manager)"
			}
			_, _ = fmt.Fprintf(w, "ready: %s leads%s\n", leader, me)
		}
	})
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.Handle("/", dash)
	return mux
}

// advertised is the address other managers reach a listener at: its own, or
// this host's name with its port when it listens on every address.
func advertised(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			return net.JoinHostPort(h, port)
		}
	}
	return a.String()
}
