package reservation

import (
	"context"
	"testing"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// Agents are asked for measured rates only while someone reads them (a
// dashboard page), and what they report is what is read: the busiest router's
// figure for each ON.
func TestMeasuredRatesOnlyWhileAsked(t *testing.T) {
	_, cli := newEtcd(t)
	m := startManager(t, cli, Config{})
	applyYAML(t, m, routed)
	ctx := context.Background()
	register := func(node string, rates ...*vonv1.OnRate) *vonv1.AgentRegistryServiceRegisterResponse {
		t.Helper()
		resp, err := m.Register(ctx, &vonv1.AgentRegistryServiceRegisterRequest{Node: node, Endpoint: "127.0.0.1:1", Heartbeat: true, OnRates: rates})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if register("r1").GetReportRates() {
		t.Fatal("agents asked for rates before anyone read them")
	}
	if got := m.MeasuredRates(); len(got) != 0 {
		t.Fatalf("rates before any report: %v", got)
	}
	if !register("r1").GetReportRates() {
		t.Fatal("agents not asked for rates once they are read")
	}
	register("r1", &vonv1.OnRate{OnId: 7, RateBps: 3_000_000}, &vonv1.OnRate{OnId: 8, RateBps: 1_000})
	register("r2", &vonv1.OnRate{OnId: 7, RateBps: 4_000_000})
	got := m.MeasuredRates()
	if len(got) != 2 || got[7] != 4_000_000 || got[8] != 1_000 {
		t.Fatalf("measured %v, want ON 7 at its busiest router's 4 Mbit/s and ON 8 at 1 kbit/s", got)
	}
	// A report replaces the router's previous one: ON 8 stopped sending.
	register("r1")
	if got := m.MeasuredRates(); len(got) != 1 || got[7] != 4_000_000 {
		t.Fatalf("after r1 reported nothing: %v", got)
	}
}
