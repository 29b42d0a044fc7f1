package reservation

import (
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"testing"
	"time"

	"github.com/vonproject/von/credential"
	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// Every member of one ON gets the same gossip key, sealed so that only it opens its
// copy; two managers of one cluster hand out the same key; another ON gets another.
func TestGossipKeySealedToEachMember(t *testing.T) {
	_, cli := newEtcd(t)
	m1, m2 := New(cli, Config{}), New(cli, Config{})
	putRecord(t, m1, committedRecord("g", 42, time.Now().Add(time.Hour)))
	putRecord(t, m1, committedRecord("other", 43, time.Now().Add(time.Hour)))
	open := func(m *Manager, name, member string) []byte {
		t.Helper()
		priv, err := ecdh.X25519().GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		req := issueReq(t, name, member)
		req.SealPublicKey = priv.PublicKey().Bytes()
		resp, err := (&server{M: m}).IssueMemberCredential(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		key, err := credential.OpenGossipKey(resp.GetSealedGossipKey(), priv, name, resp.GetOnId(), member)
		if err != nil {
			t.Fatalf("%s opens its gossip key: %v", member, err)
		}
		other, _ := ecdh.X25519().GenerateKey(rand.Reader)
		if _, err := credential.OpenGossipKey(resp.GetSealedGossipKey(), other, name, resp.GetOnId(), member); err == nil {
			t.Fatal("a key that is not the member's opened its gossip key")
		}
		return key
	}
	k1, k2 := open(m1, "g", "h1"), open(m2, "g", "h2")
	if string(k1) != string(k2) {
		t.Error("two members of one ON got different gossip keys")
	}
	if k3 := open(m1, "other", "h1"); string(k3) == string(k1) {
		t.Error("another ON got the same gossip key")
	}
	_ = vonv1.ReservationState_RESERVATION_STATE_COMMITTED
}
