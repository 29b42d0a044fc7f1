// Package etcdembed runs a single-node etcd inside the process: von-manager's
// default store (under --data-dir), and the real etcd of tests.
package etcdembed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Options configures the single-node etcd a manager runs by default.
type Options struct {
	// Dir holds etcd's data (WAL and snapshots); it survives restarts.
	Dir string
	// ClientAddr and PeerAddr are host:port on loopback; empty picks free ports.
	ClientAddr, PeerAddr string
	// NoFsync trades durability for speed; tests and benchmarks only.
	NoFsync bool
	Logger  *slog.Logger
}

// Server is a running in-process etcd server.
type Server struct {
	etcd      *embed.Etcd
	Endpoints []string
}

// Start starts a single-node etcd and waits until it serves.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("embedded etcd: a data directory is required")
	}
	cfg := embed.NewConfig()
	cfg.Dir = opts.Dir
	cfg.Name = "von"
	cfg.UnsafeNoFsync = opts.NoFsync
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	// A port picked free can be taken by someone else before etcd binds it
	// (any outgoing connection may get it as its ephemeral port): when the
	// ports are ours to pick, pick again.
	var (
		e      *embed.Etcd
		cu, pu url.URL
		err    error
	)
	for attempt := 0; ; attempt++ {
		clientAddr, peerAddr := opts.ClientAddr, opts.PeerAddr
		if clientAddr == "" {
			if clientAddr, err = pickAddr(); err != nil {
				return nil, err
			}
		}
		if peerAddr == "" {
			if peerAddr, err = pickAddr(); err != nil {
				return nil, err
			}
		}
		cu = url.URL{Scheme: "http", Host: clientAddr}
		pu = url.URL{Scheme: "http", Host: peerAddr}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
		cfg.InitialCluster = cfg.Name + "=" + pu.String()
		e, err = embed.StartEtcd(cfg)
		if err == nil {
			break
		}
		picked := opts.ClientAddr == "" || opts.PeerAddr == ""
		if !picked || attempt >= 4 || !addrInUse(err) {
			return nil, fmt.Errorf("embedded etcd in %s: %w", opts.Dir, err)
		}
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedded etcd: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, ctx.Err()
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, errors.New("embedded etcd: not ready after 60s")
	}
	if opts.Logger != nil {
		opts.Logger.Info("embedded etcd ready", "dir", opts.Dir, "client", cu.String())
	}
	return &Server{etcd: e, Endpoints: []string{cu.String()}}, nil
}

// Client opens a client to the embedded server.
func (m *Server) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: m.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// Close stops the server.
func (m *Server) Close() {
	m.etcd.Close()
}

func addrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

// pickAddr is freeAddr; tests replace it to hand out a taken port.
var pickAddr = freeAddr

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Addr().(*net.TCPAddr).Port)), nil
}
