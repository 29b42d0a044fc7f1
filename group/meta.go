package group

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"fmt"
	"net"
	"net/netip"
	"time"

	vonv1 "github.com/vonproject/von/proto/von/v1"

	"github.com/vonproject/von/credential"
)

// Node meta layout (memberlist caps it at 512 bytes, memberlist.MetaMaxSize):
//
//	"VM" 0x01 | claims | credential signature | key id | incarnation (u64) |
//	advertised address (ip bytes, port u16) | proof
//
// byte strings are uvarint-length-prefixed. proof = Ed25519(claims.public_key,
// proofDomain || VON || node name || address || incarnation), so a node can neither
// present someone else's credential (it lacks the private key) nor replay its own
// meta from another address or into another VON.
const (
	metaMagic0, metaMagic1, metaVersion = 'V', 'M', 1
	proofDomain                         = "von.v1.group.join\x00"
)

// nodeMeta is the decoded node meta.
type nodeMeta struct {
	cred        *vonv1.MemberCredential
	incarnation uint64
	addr        netip.AddrPort
	proof       []byte
}

func proofInput(von, name string, addr netip.AddrPort, inc uint64) []byte {
	w := wbuf{b: []byte(proofDomain)}
	w.str(von)
	w.str(name)
	w.addr(addr)
	w.u64(inc)
	return w.b
}

// encodeMeta builds this member's meta and its proof.
func encodeMeta(von, name string, addr netip.AddrPort, inc uint64, cred *vonv1.MemberCredential, sign ed25519.PrivateKey) []byte {
	w := wbuf{}
	w.fixed([]byte{metaMagic0, metaMagic1, metaVersion})
	w.bytes(cred.GetClaims())
	w.bytes(cred.GetSignature())
	w.str(cred.GetKeyId())
	w.u64(inc)
	w.addr(addr)
	w.bytes(ed25519.Sign(sign, proofInput(von, name, addr, inc)))
	return w.b
}

// decodeMeta parses meta. It never panics and copies nothing it does not keep.
func decodeMeta(b []byte) (*nodeMeta, error) {
	r := newR(b)
	if r.u8() != metaMagic0 || r.u8() != metaMagic1 || r.u8() != metaVersion {
		return nil, fmt.Errorf("%w: bad magic or version", ErrMeta)
	}
	m := &nodeMeta{cred: &vonv1.MemberCredential{}}
	m.cred.Claims = append([]byte(nil), r.bytes(maxBlob)...)
	m.cred.Signature = append([]byte(nil), r.bytes(ed25519.SignatureSize)...)
	m.cred.KeyId = r.str(64)
	m.incarnation = r.u64()
	m.addr = r.addr()
	m.proof = append([]byte(nil), r.bytes(ed25519.SignatureSize)...)
	if !r.done() {
		return nil, fmt.Errorf("%w: truncated or trailing bytes", ErrMeta)
	}
	return m, nil
}

// peerInfo is what a verified meta tells about a node.
type peerInfo struct {
	Member
	meta   string // the exact meta bytes verified
	sealPK hpke.PublicKey
}

// nodeAddr converts memberlist's address form.
func nodeAddr(ip net.IP, port uint16) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip)
	return netip.AddrPortFrom(a.Unmap(), port)
}

// verifyMeta checks a node's meta: the credential (signature by a manager key, ON,
// expiry at now), that its member is the node name, that the node speaks from the
// address it signed, and the proof of possession of the credential's key.
func verifyMeta(von string, onID uint32, name string, addr netip.AddrPort, meta []byte,
	keys []*vonv1.VerificationKey, now time.Time) (*peerInfo, error) {
	m, err := decodeMeta(meta)
	if err != nil {
		return nil, err
	}
	cl, err := credential.Verify(m.cred, keys, onID, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrNodeCredential, name, err)
	}
	if cl.GetMember() != name {
		return nil, fmt.Errorf("%w: node %q, credential %q", ErrMemberMismatch, name, cl.GetMember())
	}
	if m.addr != addr {
		return nil, fmt.Errorf("%w: %q signed %s, speaks from %s", ErrAddrMismatch, name, m.addr, addr)
	}
	if m.incarnation == 0 {
		return nil, fmt.Errorf("%w: zero incarnation", ErrMeta)
	}
	pub := ed25519.PublicKey(cl.GetPublicKey())
	if len(m.proof) != ed25519.SignatureSize || !ed25519.Verify(pub, proofInput(von, name, addr, m.incarnation), m.proof) {
		return nil, fmt.Errorf("%w: %q", ErrProof, name)
	}
	xpub, err := ecdh.X25519().NewPublicKey(cl.GetSealPublicKey())
	if err != nil {
		return nil, fmt.Errorf("%w: seal key: %w", ErrNodeCredential, err)
	}
	sealPK, err := hpke.NewDHKEMPublicKey(xpub)
	if err != nil {
		return nil, fmt.Errorf("%w: seal key: %w", ErrNodeCredential, err)
	}
	return &peerInfo{
		Member: Member{Name: name, Addr: addr, Incarnation: m.incarnation, SignKey: pub,
			SealKey: append([]byte(nil), cl.GetSealPublicKey()...)},
		meta:   string(meta),
		sealPK: sealPK,
	}, nil
}
