package reservation

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vonproject/von/etcdembed"
)

// newBenchEtcd is a real embedded etcd with fsync on, as the manager runs it.
func newBenchEtcd(b *testing.B) *clientv3.Client {
	b.Helper()
	e, err := etcdembed.Start(context.Background(), etcdembed.Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	cli, err := e.Client()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cli.Close(); e.Close() })
	return cli
}

// BenchmarkEtcdTxn is the raw rate of guarded etcd transactions (compare mod revision,
// put) on this machine: the ceiling for anything the manager does per reservation.
func BenchmarkEtcdTxn(b *testing.B) {
	cli := newBenchEtcd(b)
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			k := "/bench/serial/" + strconv.Itoa(i)
			if _, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", 0)).Then(clientv3.OpPut(k, "x")).Commit(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var n atomic.Int64
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				k := fmt.Sprintf("/bench/par/%d", n.Add(1))
				if _, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", 0)).Then(clientv3.OpPut(k, "x")).Commit(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkAdmitRelease is the ledger alone: admit on ten link directions, release.
func BenchmarkAdmitRelease(b *testing.B) {
	cli := newBenchEtcd(b)
	l := NewLedger(cli, "/bench")
	ctx := context.Background()
	var charges []Charge
	amounts := map[Charge]uint64{}
	for i := range 10 {
		c := Charge{Link: fmt.Sprintf("l%d", i), Dir: AtoB}
		charges = append(charges, c)
		amounts[c] = 1
	}
	for b.Loop() {
		id, _, err := l.Admit(ctx, Admission{Owner: "x", Rate: 1, Charges: charges, Limit: limit(1 << 40)})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := l.Release(ctx, id, amounts, nil, nil); err != nil {
			b.Fatal(err)
		}
	}
}
