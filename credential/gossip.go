package credential

import (
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// GossipKeyLen is the length of a VON's gossip key (memberlist's AES-256 keyring key).
const GossipKeyLen = 32

// ErrGossipKey: a sealed gossip key did not open.
var ErrGossipKey = errors.New("credential: gossip key does not open")

// GossipKey derives the gossip key of one ON from the cluster's gossip secret: every
// manager derives the same key, and a new ON (a new id) gets a new one.
func GossipKey(secret []byte, reservation string, onID uint32) ([]byte, error) {
	if len(secret) < 32 {
		return nil, fmt.Errorf("credential: gossip secret is %d bytes, want ≥ 32", len(secret))
	}
	return hkdf.Key(sha256.New, secret, nil, string(gossipInfo(reservation, onID, "")), GossipKeyLen)
}

func gossipInfo(reservation string, onID uint32, member string) []byte {
	b := []byte("von.v1 gossip key\x00")
	b = binary.BigEndian.AppendUint32(b, onID)
	b = append(b, byte(len(reservation)))
	b = append(b, reservation...)
	b = append(b, byte(len(member)))
	return append(b, member...)
}

// SealGossipKey seals key to a member's X25519 key (HPKE: DHKEM(X25519), HKDF-SHA256,
// AES-256-GCM), binding the reservation, ON and member, so only that member opens it.
func SealGossipKey(key, sealPub []byte, reservation string, onID uint32, member string) ([]byte, error) {
	pub, err := ecdh.X25519().NewPublicKey(sealPub)
	if err != nil {
		return nil, fmt.Errorf("credential: member seal key: %w", err)
	}
	hpub, err := hpke.NewDHKEMPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return hpke.Seal(hpub, hpke.HKDFSHA256(), hpke.AES256GCM(), gossipInfo(reservation, onID, member), key)
}

// OpenGossipKey opens what SealGossipKey sealed to priv.
func OpenGossipKey(sealed []byte, priv *ecdh.PrivateKey, reservation string, onID uint32, member string) ([]byte, error) {
	hpriv, err := hpke.NewDHKEMPrivateKey(priv)
	if err != nil {
		return nil, err
	}
	key, err := hpke.Open(hpriv, hpke.HKDFSHA256(), hpke.AES256GCM(), gossipInfo(reservation, onID, member), sealed)
	if err != nil || len(key) != GossipKeyLen {
		return nil, ErrGossipKey
	}
	return key, nil
}
