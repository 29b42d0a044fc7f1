package reservation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// EmbeddedOptions configures the single-node etcd a manager runs by default.
type EmbeddedOptions struct {
	// Dir holds etcd's data (WAL and snapshots); it survives restarts.
	Dir string
	// ClientAddr and PeerAddr are host:port on loopback; empty picks free ports.
	ClientAddr, PeerAddr string
	// NoFsync trades durability for speed; tests and benchmarks only.
	NoFsync bool
	Logger  *slog.Logger
}

// Embedded is a running in-process etcd server.
type Embedded struct {
	etcd      *embed.Etcd
	Endpoints []string
}

// StartEmbedded starts a single-node etcd and waits until it serves.
func StartEmbedded(ctx context.Context, opts EmbeddedOptions) (*Embedded, error) {
	if opts.Dir == "" {
		return nil, errors.New("embedded etcd: a data directory is required")
	}
	cfg := embed.NewConfig()
	cfg.Dir = opts.Dir
	cfg.Name = "von"
	cfg.UnsafeNoFsync = opts.NoFsync
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	var err error
	clientAddr, peerAddr := opts.ClientAddr, opts.PeerAddr
	if clientAddr == "" {
		if clientAddr, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	if peerAddr == "" {
		if peerAddr, err = freeAddr(); err != nil {
			return nil, err
		}
	}
	cu := url.URL{Scheme: "http", Host: clientAddr}
	pu := url.URL{Scheme: "http", Host: peerAddr}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	cfg.InitialCluster = cfg.Name + "=" + pu.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("embedded etcd in %s: %w", opts.Dir, err)
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
	return &Embedded{etcd: e, Endpoints: []string{cu.String()}}, nil
}

// Client opens a client to the embedded server.
func (m *Embedded) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: m.Endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// Close stops the server.
func (m *Embedded) Close() {
	m.etcd.Close()
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(l.Addr().(*net.TCPAddr).Port)), nil
}
