package credential

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// ErrRetired: a retired signing key was asked to sign.
var ErrRetired = errors.New("credential: signing key is retired")

// SigningKey is one of the manager's credential signing keys as the manager stores it:
// the Ed25519 private key, when it was created and whether it still signs. A retired
// key signs nothing new but stays published (VerificationKey) while credentials it
// signed may still be valid.
type SigningKey struct {
	Private ed25519.PrivateKey
	Created time.Time
	Active  bool
	Retired time.Time // when it stopped signing; zero while active
}

// GenerateSigningKey makes a new active signing key created at now.
func GenerateSigningKey(now time.Time) (*SigningKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate signing key: %w", err)
	}
	return &SigningKey{Private: priv, Created: now, Active: true}, nil
}

// Public is the key's Ed25519 public key.
func (k *SigningKey) Public() ed25519.PublicKey { return k.Private.Public().(ed25519.PublicKey) }

// ID is the key identifier (KeyID of the public key).
func (k *SigningKey) ID() string { return KeyID(k.Public()) }

// Sign signs claims with the key; a retired key refuses (ErrRetired).
func (k *SigningKey) Sign(claims *vonv1.MemberCredentialClaims) (*vonv1.MemberCredential, error) {
	if !k.Active {
		return nil, fmt.Errorf("%w: %s", ErrRetired, k.ID())
	}
	return Sign(k.Private, claims)
}

// VerificationKey is the key as members see it.
func (k *SigningKey) VerificationKey() *vonv1.VerificationKey {
	return VerificationKey(k.Public(), k.Created, k.Active)
}

// signingKeyJSON is the stored form. The private key is kept as its 32-byte seed.
type signingKeyJSON struct {
	KeyID      string    `json:"key_id"`
	PublicKey  []byte    `json:"public_key"`
	Seed       []byte    `json:"seed"`
	CreateTime time.Time `json:"create_time"`
	Active     bool      `json:"active"`
	RetireTime time.Time `json:"retire_time,omitzero"`
}

// Marshal encodes the key, private part included, for the manager's store.
func (k *SigningKey) Marshal() ([]byte, error) {
	if len(k.Private) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: signing key is %d bytes", ErrMalformed, len(k.Private))
	}
	return json.Marshal(signingKeyJSON{KeyID: k.ID(), PublicKey: k.Public(), Seed: k.Private.Seed(),
		CreateTime: k.Created.UTC(), Active: k.Active, RetireTime: k.Retired.UTC()})
}

// ParseSigningKey decodes what Marshal wrote and checks that the seed, the public key
// and the key id agree.
func ParseSigningKey(b []byte) (*SigningKey, error) {
	var j signingKeyJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("%w: signing key: %w", ErrMalformed, err)
	}
	if len(j.Seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: signing key seed is %d bytes", ErrMalformed, len(j.Seed))
	}
	k := &SigningKey{Private: ed25519.NewKeyFromSeed(j.Seed), Created: j.CreateTime, Active: j.Active, Retired: j.RetireTime}
	if !bytes.Equal(k.Public(), j.PublicKey) || k.ID() != j.KeyID {
		return nil, fmt.Errorf("%w: signing key %s: seed, public key and key id disagree", ErrMalformed, j.KeyID)
	}
	return k, nil
}

// SortKeys orders verification keys as GetVerificationKeys lists them: active first,
// then newest first (by create time, then key id).
func SortKeys(keys []*vonv1.VerificationKey) {
	sort.SliceStable(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.GetActive() != b.GetActive() {
			return a.GetActive()
		}
		ta, tb := a.GetCreateTime().AsTime(), b.GetCreateTime().AsTime()
		if !ta.Equal(tb) {
			return ta.After(tb)
		}
		return a.GetKeyId() < b.GetKeyId()
	})
}
