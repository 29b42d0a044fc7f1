package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/vonproject/von/internal/testenv"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// The binary's run loop serves AgentService and metrics for a namespace and
// stops cleanly when its context ends (what SIGINT/SIGTERM do).
func TestServesAndStopsGracefully(t *testing.T) {
	testenv.RequireRoot(t, "to create a network namespace")
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	ns := "vat-" + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })

	listen, metrics := testenv.FreeAddr(t), testenv.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuf
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--node", "r9", "--manager", testenv.FreeAddr(t), "--listen", listen, "--metrics", metrics,
			"--netns", ns, "--state-dir", t.TempDir(), "--log-format", "json", "--register-interval", "100ms", "--insecure"}, io.Discard, &logs)
	}()
	conn, err := grpc.NewClient(listen, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := vonv1.NewAgentServiceClient(conn)
	var st *vonv1.AgentServiceStatusResponse
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		sctx, scancel := context.WithTimeout(ctx, time.Second)
		st, err = c.Status(sctx, &vonv1.AgentServiceStatusRequest{})
		scancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || st.GetNode() != "r9" {
		t.Fatalf("Status: %v %v\nlogs:\n%s", st, err, logs.String())
	}
	resp, err := http.Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `von_agent_rpc_calls_total{method="Status",outcome="ok"}`) {
		t.Fatalf("metrics:\n%s", body)
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d; logs:\n%s", code, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not stop")
	}
	if l := logs.String(); !strings.Contains(l, `"msg":"agent running"`) || !strings.Contains(l, "register with the manager failed") {
		t.Fatalf("json logs lack the expected records:\n%s", l)
	}
}
