package reservation

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Cluster identifies a manager cluster: one etcd cluster's state and every
// manager on it. Leader epochs are etcd revisions and only mean something
// within one cluster, so every call to an agent names the cluster; an etcd
// rebuilt from scratch is a new cluster, created later, and agents move to it
// when they register (docs/reliability.md, "Epochs and clusters").
type Cluster struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
}

func (s *Store) clusterKey() string { return s.prefix + "/cluster" }

// Cluster returns the cluster's identity, creating it on first use (one
// create-revision guarded put, so racing managers end with one).
func (s *Store) Cluster(ctx context.Context) (*Cluster, error) {
	for range 3 {
		resp, err := s.cli.Get(ctx, s.clusterKey())
		if err != nil {
			return nil, fmt.Errorf("read cluster identity: %w", err)
		}
		if len(resp.Kvs) == 1 {
			var c Cluster
			if err := json.Unmarshal(resp.Kvs[0].Value, &c); err != nil || c.ID == "" {
				return nil, fmt.Errorf("corrupt cluster identity %q: %v", resp.Kvs[0].Value, err)
			}
			return &c, nil
		}
		b, _ := json.Marshal(Cluster{ID: randomHex(8), Created: time.Now().UTC()})
		if _, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(s.clusterKey()), "=", 0)).
			Then(clientv3.OpPut(s.clusterKey(), string(b))).Commit(); err != nil {
			return nil, fmt.Errorf("create cluster identity: %w", err)
		}
	}
	return nil, fmt.Errorf("cluster identity: %w", ErrContention)
}
