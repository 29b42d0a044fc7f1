// Package credential signs and verifies VON member credentials: the manager's
// Ed25519-signed statement that a member, holding a given pair of public keys, may join
// the group of one ON until an expiry (proto/von/v1/credential.proto).
//
// Signing and verification work on the exact claims bytes, never on a
// re-serialisation: signature = Ed25519(manager key, Domain || claims).
package credential

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// Domain prefixes the claims bytes in every credential signature, so a signature made
// for a credential can never be mistaken for one over anything else.
const Domain = "von.v1.MemberCredentialClaims\x00"

// Errors of Verify. Each is wrapped with the detail.
var (
	ErrMalformed  = errors.New("credential: malformed")
	ErrUnknownKey = errors.New("credential: signed by an unknown key")
	ErrSignature  = errors.New("credential: bad signature")
	ErrWrongON    = errors.New("credential: for another ON")
	ErrExpired    = errors.New("credential: expired")
)

// KeyID is the key identifier of an Ed25519 public key: lowercase hex of the first 8
// bytes of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// Sign serialises claims and signs them with priv.
func Sign(priv ed25519.PrivateKey, claims *vonv1.MemberCredentialClaims) (*vonv1.MemberCredential, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: signing key is %d bytes", ErrMalformed, len(priv))
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("encode claims: %w", err)
	}
	sig := ed25519.Sign(priv, append([]byte(Domain), b...))
	return &vonv1.MemberCredential{Claims: b, Signature: sig, KeyId: KeyID(priv.Public().(ed25519.PublicKey))}, nil
}

// Verify checks c's signature against the verification key it names, that it admits
// to onID and that it has not expired at now, and returns its claims. Retired keys
// (active = false) still verify: they stay listed while what they signed may be valid.
func Verify(c *vonv1.MemberCredential, keys []*vonv1.VerificationKey, onID uint32, now time.Time) (*vonv1.MemberCredentialClaims, error) {
	if c == nil || len(c.GetSignature()) != ed25519.SignatureSize || len(c.GetClaims()) == 0 {
		return nil, fmt.Errorf("%w: missing claims or signature", ErrMalformed)
	}
	var pub ed25519.PublicKey
	for _, k := range keys {
		if k.GetKeyId() == c.GetKeyId() && len(k.GetPublicKey()) == ed25519.PublicKeySize {
			pub = k.GetPublicKey()
			break
		}
	}
	if pub == nil {
		return nil, fmt.Errorf("%w: key id %q", ErrUnknownKey, c.GetKeyId())
	}
	if !ed25519.Verify(pub, append([]byte(Domain), c.GetClaims()...), c.GetSignature()) {
		return nil, ErrSignature
	}
	cl := &vonv1.MemberCredentialClaims{}
	if err := proto.Unmarshal(c.GetClaims(), cl); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrMalformed, err)
	}
	if len(cl.GetPublicKey()) != ed25519.PublicKeySize || len(cl.GetSealPublicKey()) != 32 || cl.GetMember() == "" {
		return nil, fmt.Errorf("%w: claims lack a member or its keys", ErrMalformed)
	}
	if cl.GetOnId() != onID {
		return nil, fmt.Errorf("%w: admits to ON %d, not %d", ErrWrongON, cl.GetOnId(), onID)
	}
	if cl.GetExpireTime() == nil || !now.Before(cl.GetExpireTime().AsTime()) {
		return nil, fmt.Errorf("%w: at %s", ErrExpired, cl.GetExpireTime().AsTime().Format(time.RFC3339))
	}
	return cl, nil
}

// VerificationKey describes pub as a verification key.
func VerificationKey(pub ed25519.PublicKey, created time.Time, active bool) *vonv1.VerificationKey {
	return &vonv1.VerificationKey{KeyId: KeyID(pub), PublicKey: pub, CreateTime: timestamppb.New(created), Active: active}
}
