// Package managerd is von-manager's daemon: it wires the store (an embedded etcd
// or an external cluster), a reservation.Manager, its gRPC server with mutual TLS,
// and the metrics endpoint, and runs them until stopped.
package managerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/vonproject/von/etcdembed"
	"github.com/vonproject/von/pki"
	"github.com/vonproject/von/reservation"
)

// Config is what von-manager is started with.
type Config struct {
	Listen        string   // gRPC address for vonctl, the SDK and agents
	DataDir       string   // embedded etcd data (when EtcdEndpoints is empty)
	EtcdEndpoints []string // external etcd cluster instead of the embedded one
	MetricsAddr   string   // Prometheus /metrics; empty disables
	Pprof         bool     // also serve Go's /debug/pprof/ there (profiling)
	Manager       reservation.Config
	// Ready, if set, is called with the bound gRPC address once serving.
	Ready func(addr string)
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
	endpoints := cfg.EtcdEndpoints
	if len(endpoints) == 0 {
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
	var hs *http.Server
	if cfg.MetricsAddr != "" {
		ml, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			gs.Stop()
			return fmt.Errorf("von-manager: metrics listen %s: %w", cfg.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		if cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { errc <- hs.Serve(ml) }()
	}
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	runDone := make(chan struct{})
	go func() { errc <- m.Run(rctx); close(runDone) }()
	security := "insecure (plaintext, no authorization)"
	if cfg.TLS != nil {
		security = "mutual TLS as " + cfg.TLS.Identity().String()
	}
	log.Info("von-manager serving", "listen", lis.Addr().String(), "etcd", endpoints, "metrics", cfg.MetricsAddr, "security", security)
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
