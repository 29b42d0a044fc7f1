package credential

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

func TestSignVerify(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	mpub, _, _ := ed25519.GenerateKey(rand.Reader)
	now := time.Now()
	claims := &vonv1.MemberCredentialClaims{OnId: 7, Reservation: "video", Member: "h1", PublicKey: mpub,
		SealPublicKey: make([]byte, 32), IssueTime: timestamppb.New(now), ExpireTime: timestamppb.New(now.Add(time.Hour))}
	c, err := Sign(priv, claims)
	if err != nil {
		t.Fatal(err)
	}
	keys := []*vonv1.VerificationKey{VerificationKey(pub, now, true)}
	got, err := Verify(c, keys, 7, now)
	if err != nil || got.GetMember() != "h1" {
		t.Fatalf("Verify = %v, %v", got, err)
	}
	if _, err := Verify(c, keys, 8, now); !errors.Is(err, ErrWrongON) {
		t.Errorf("other ON: %v", err)
	}
	if _, err := Verify(c, keys, 7, now.Add(2*time.Hour)); !errors.Is(err, ErrExpired) {
		t.Errorf("expired: %v", err)
	}
	other, _, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := Verify(c, []*vonv1.VerificationKey{VerificationKey(other, now, true)}, 7, now); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("unknown key: %v", err)
	}
	bad := &vonv1.MemberCredential{Claims: append([]byte(nil), c.Claims...), Signature: c.Signature, KeyId: c.KeyId}
	bad.Claims[len(bad.Claims)-1] ^= 1
	if _, err := Verify(bad, keys, 7, now); !errors.Is(err, ErrSignature) {
		t.Errorf("tampered: %v", err)
	}
	if _, err := Verify(nil, keys, 7, now); !errors.Is(err, ErrMalformed) {
		t.Errorf("nil: %v", err)
	}
}

func TestGossipKey(t *testing.T) {
	secret := make([]byte, 32)
	k1, err := GossipKey(secret, "video", 7)
	if err != nil || len(k1) != GossipKeyLen {
		t.Fatal(k1, err)
	}
	if k2, _ := GossipKey(secret, "video", 8); string(k2) == string(k1) {
		t.Error("another ON id, same gossip key")
	}
	priv, _ := ecdh.X25519().GenerateKey(rand.Reader)
	other, _ := ecdh.X25519().GenerateKey(rand.Reader)
	sealed, err := SealGossipKey(k1, priv.PublicKey().Bytes(), "video", 7, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := OpenGossipKey(sealed, priv, "video", 7, "h1"); err != nil || string(got) != string(k1) {
		t.Fatalf("open: %v", err)
	}
	if _, err := OpenGossipKey(sealed, other, "video", 7, "h1"); !errors.Is(err, ErrGossipKey) {
		t.Errorf("another member's key opened it: %v", err)
	}
	if _, err := OpenGossipKey(sealed, priv, "video", 7, "h2"); !errors.Is(err, ErrGossipKey) {
		t.Errorf("opened for another member name: %v", err)
	}
}
