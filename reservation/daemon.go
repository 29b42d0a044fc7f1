package reservation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// DaemonConfig is what von-manager is started with.
type DaemonConfig struct {
	Listen        string   // gRPC address for vonctl, the SDK and agents
	DataDir       string   // embedded etcd data (when EtcdEndpoints is empty)
	EtcdEndpoints []string // external etcd cluster instead of the embedded one
	MetricsAddr   string   // Prometheus /metrics; empty disables
	Manager       Config
	// Ready, if set, is called with the bound gRPC address once serving.
	Ready func(addr string)
}

// RunDaemon runs a manager until ctx ends: etcd (embedded unless endpoints are given),
// the gRPC services, the leader loops and the metrics endpoint.
func RunDaemon(ctx context.Context, cfg DaemonConfig) error {
	log := cfg.Manager.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
		cfg.Manager.Logger = log
	}
	endpoints := cfg.EtcdEndpoints
	if len(endpoints) == 0 {
		if cfg.DataDir == "" {
			return errors.New("von-manager: give --data-dir for the embedded etcd, or --etcd-endpoints")
		}
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("von-manager: data dir: %w", err)
		}
		e, err := StartEmbedded(ctx, EmbeddedOptions{Dir: filepath.Join(cfg.DataDir, "etcd"), Logger: log})
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
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Manager.Metrics = NewMetrics(reg)
	m := New(cli, cfg.Manager)
	defer m.Close()
	reg.MustRegister(m.StateCollector())

	lis, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("von-manager: listen %s: %w", cfg.Listen, err)
	}
	gs := grpc.NewServer()
	srv := &Server{M: m}
	registerServices(gs, srv)
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
		hs = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { errc <- hs.Serve(ml) }()
	}
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	runDone := make(chan struct{})
	go func() { errc <- m.Run(rctx); close(runDone) }()
	log.Info("von-manager serving", "listen", lis.Addr().String(), "etcd", endpoints, "metrics", cfg.MetricsAddr)
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
