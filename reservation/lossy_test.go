package reservation

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// lossyKV is the real etcd with one injected fault: the answer to the
// transaction that records a commit decision is lost (the write lands), and
// reads of round records fail for a while after.
type lossyKV struct {
	clientv3.KV
	armed    atomic.Bool
	failGets atomic.Int32
}

func (k *lossyKV) Txn(ctx context.Context) clientv3.Txn { return &lossyTxn{Txn: k.KV.Txn(ctx), kv: k} }

func (k *lossyKV) Get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	if strings.Contains(key, "/txns/") && k.failGets.Add(-1) >= 0 {
		return nil, errors.New("injected: etcd unreachable")
	}
	return k.KV.Get(ctx, key, opts...)
}

type lossyTxn struct {
	clientv3.Txn
	kv  *lossyKV
	ops []clientv3.Op
}

func (t *lossyTxn) If(cs ...clientv3.Cmp) clientv3.Txn   { t.Txn = t.Txn.If(cs...); return t }
func (t *lossyTxn) Else(ops ...clientv3.Op) clientv3.Txn { t.Txn = t.Txn.Else(ops...); return t }
func (t *lossyTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	t.ops = append(t.ops, ops...)
	t.Txn = t.Txn.Then(ops...)
	return t
}

func (t *lossyTxn) Commit() (*clientv3.TxnResponse, error) {
	resp, err := t.Txn.Commit()
	if err != nil || !t.kv.armed.Load() {
		return resp, err
	}
	for _, op := range t.ops {
		if strings.Contains(string(op.KeyBytes()), "/txns/") && strings.Contains(string(op.ValueBytes()), `"decision":"commit"`) {
			t.kv.armed.Store(false)
			t.kv.failGets.Store(30)
			return nil, errors.New("injected: connection lost after the commit")
		}
	}
	return resp, err
}

// The answer to the commit decision's write is lost and the decision cannot be
// read back: the client is told the outcome is unknown — never that the
// reservation failed, for it committed — and a retry returns it.
func TestLostDecisionAnswerIsNotAFailure(t *testing.T) {
	_, cli := newEtcd(t)
	kv := &lossyKV{KV: cli.KV}
	cli.KV = kv
	m := startManager(t, cli, Config{})
	applyYAML(t, m, direct)
	ctx := context.Background()
	kv.armed.Store(true)
	req := ReserveRequest{Name: "u", Members: []string{"h1", "h2"}, Rate: 1_000_000}
	_, err := m.Reserve(ctx, req)
	if !errors.Is(err, ErrUnknownOutcome) {
		t.Fatalf("Reserve after a lost decision answer: %v, want the outcome unknown", err)
	}
	rec, _, gerr := m.store.Get(ctx, "u")
	if gerr != nil || rec.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
		t.Fatalf("the decision landed: %v %v", rec.GetState(), gerr)
	}
	r, err := m.Reserve(ctx, req)
	if err != nil || r.GetState() != vonv1.ReservationState_RESERVATION_STATE_COMMITTED {
		t.Fatalf("retry: %v %v", r.GetState(), err)
	}
}
