package vonlink

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// ControlDir is where vonlink's control sockets live.
const ControlDir = "/run/vonlink"

// ControlPath is the control socket of the interface dev in network namespace
// netns ("" for this one): ControlDir/dev.sock, or ControlDir/<netns>/dev.sock.
func ControlPath(netns, dev string) string {
	if dev == "" {
		dev = DefaultDev
	}
	if netns == "" {
		return filepath.Join(ControlDir, dev+".sock")
	}
	return filepath.Join(ControlDir, filepath.Base(netns), dev+".sock")
}

// ErrNotRunning: no vonlink answers on the control socket.
var ErrNotRunning = errors.New("vonlink: not running")

// Control serves the link's status (GET /status, JSON) on a Unix socket at path
// until ctx ends. A stale socket a crashed vonlink left is replaced; one a live
// vonlink answers on is an error.
type Control struct {
	path string
	srv  *http.Server
	done chan error
}

// ServeControl starts serving l's status at path.
func ServeControl(l *Link, path string) (*Control, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%w: another vonlink answers on %s", ErrDevice, path)
	}
	_ = os.Remove(path)
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(l.Status())
	})
	c := &Control{path: path, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, done: make(chan error, 1)}
	go func() {
		err := c.srv.Serve(lis)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		c.done <- err
	}()
	return c, nil
}

// Close stops serving and removes the socket.
func (c *Control) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := c.srv.Shutdown(ctx)
	err = errors.Join(err, <-c.done)
	_ = os.Remove(c.path)
	return err
}

// ReadStatus asks the vonlink serving path for its status.
func ReadStatus(ctx context.Context, path string) (Status, error) {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", path)
	}}}
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://vonlink/status", nil)
	if err != nil {
		return Status{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Status{}, fmt.Errorf("%w: %s: %w", ErrNotRunning, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Status{}, fmt.Errorf("vonlink at %s answered %s", path, resp.Status)
	}
	var s Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return Status{}, fmt.Errorf("vonlink at %s: %w", path, err)
	}
	return s, nil
}
