package reservation

import (
	"context"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vonproject/von/etcdembed"
)

// newEtcd starts a real embedded etcd for one test and returns a client to it.
func newEtcd(t testing.TB) (*etcdembed.Server, *clientv3.Client) {
	t.Helper()
	e, err := etcdembed.Start(context.Background(), etcdembed.Options{Dir: t.TempDir(), NoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	cli, err := e.Client()
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close(); e.Close() })
	return e, cli
}
