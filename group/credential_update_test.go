package group

import (
	"context"
	"testing"
	"time"

	"github.com/vonproject/von/credential"
	vonv1 "github.com/vonproject/von/proto/von/v1"

	"google.golang.org/protobuf/types/known/timestamppb"
)

// A member whose credential runs out while it is joined stays a member, and with a
// fresh credential advertised (UpdateCredential) a member joining after the old expiry
// admits it; without the update it would not. OnKey sees every epoch key installed.
func TestUpdateCredential(t *testing.T) {
	c := newCluster(t)
	short := c.mgr.issue(t, "a00", testONID, time.Now().Add(1500*time.Millisecond))
	cfgA := c.mgr.config(short)
	var keys []EpochKey
	cfgA.OnKey = func(k EpochKey) { keys = append(keys, k) }
	a := c.start(cfgA)
	stale := c.start(c.mgr.config(c.mgr.issue(t, "a01", testONID, time.Now().Add(1500*time.Millisecond)), a.selfAddr.String()))
	waitFor(t, 5*time.Second, "two members", func() bool { return len(a.Members()) == 2 && len(stale.Members()) == 2 })

	// A fresh credential for a00's same keys, as the SDK asks the manager for one.
	claims := &vonv1.MemberCredentialClaims{}
	if cl, err := credential.Verify(short.cred, mustKeys(t, c.mgr), testONID, time.Now()); err != nil {
		t.Fatal(err)
	} else {
		claims = cl
	}
	claims.ExpireTime = timestamppb.New(time.Now().Add(time.Hour))
	fresh, err := credential.Sign(c.mgr.priv, claims)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := a.UpdateCredential(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // both original credentials have expired now
	late := c.start(c.mgr.config(c.mgr.issue(t, "a02", testONID, time.Now().Add(time.Hour)), a.selfAddr.String()))
	waitFor(t, 5*time.Second, "the late joiner admits a00", func() bool {
		for _, m := range late.Members() {
			if m.Name == "a00" {
				return true
			}
		}
		return false
	})
	for _, m := range late.Members() {
		if m.Name == "a01" {
			t.Errorf("the late joiner admitted a01, whose credential expired")
		}
	}
	a.mu.RLock()
	n := len(keys)
	a.mu.RUnlock()
	if n == 0 {
		t.Error("OnKey saw no epoch key")
	}
}

func mustKeys(t *testing.T, m *manager) []*vonv1.VerificationKey {
	t.Helper()
	ks, err := m.keys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ks
}
