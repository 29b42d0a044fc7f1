package reservation

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Leader names the manager that leads now, as the oldest key under the
// election prefix says ("" while none does); any manager, leader or not, can
// ask. An error means etcd could not be read (a linearizable read: it fails
// while etcd itself has no quorum). The dashboard shows it and /readyz
// reports not ready without one.
func (m *Manager) Leader(ctx context.Context) (string, error) {
	resp, err := m.cli.Get(ctx, m.store.electionPrefix()+"/", clientv3.WithFirstCreate()...)
	if err != nil {
		return "", fmt.Errorf("read the election: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return "", nil
	}
	return parseCandidate(resp.Kvs[0].Value).ID, nil
}
