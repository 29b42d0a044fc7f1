package group

import (
	"crypto/ed25519"
	"fmt"
)

// Rekey message types. All are sent directly to one member (memberlist user
// messages, never gossip) and all are signed by their sender's Ed25519 key from its
// verified meta.
const (
	msgPropose byte = 1 // coordinator → recipient: sealed epoch key + recipient list
	msgAck     byte = 2 // recipient → coordinator: key installed for receiving
	msgCommit  byte = 3 // coordinator → recipients: start sending with the epoch
	msgPull    byte = 4 // member → coordinator: resend my proposal (+ commit) of an epoch
	msgNack    byte = 5 // member → coordinator: refused (reason) + the member's epochs
	msgBye     byte = 6 // leaving member → all: graceful leave (memberlist cannot tell)
	msgByeAck  byte = 7 // member → leaving member: bye seen, you may broadcast your leave
)

// Nack reasons.
const (
	nackStale        byte = 1 // the member already sends with a higher epoch
	nackDeparted     byte = 2 // the recipient list names a member known to have departed
	nackNotRecipient byte = 3 // (pull) the puller is not a recipient of that epoch
)

const (
	msgMagic0, msgMagic1, msgVersion = 'V', 'R', 1
	msgDomain                        = "von.v1.group.rekey\x00"
	// hpkeInfoDomain starts the HPKE info of an epoch key.
	hpkeInfoDomain = "von.v1.group.epoch-key\x00"
)

// epochID totally orders epochs: by number, then by coordinator name, the lower
// name ranking higher (it is the coordinator of a converged view).
type epochID struct {
	E uint64
	C string
}

// less reports whether a ranks below b.
func (a epochID) less(b epochID) bool {
	if a.E != b.E {
		return a.E < b.E
	}
	return a.C > b.C
}

func (a epochID) String() string { return fmt.Sprintf("%d/%s", a.E, a.C) }

// ref names one incarnation of a member.
type ref struct {
	Name string
	Inc  uint64
}

// message is a decoded rekey message.
type message struct {
	Type     byte
	VON      string
	Epoch    epochID // not in bye and bye-ack
	CoordInc uint64  // propose, commit
	From     ref     // ack, pull, nack, bye, bye-ack: the sender. propose: the recipient
	Recips   []ref   // propose
	Sealed   []byte  // propose: HPKE enc || ciphertext of the epoch key
	Reason   byte    // nack
	High     epochID // nack: the sender's sending epoch
	body     []byte  // signed bytes
	Sig      []byte
}

// signer is who must have signed m.
func (m *message) signer() ref {
	if m.Type == msgPropose || m.Type == msgCommit {
		return ref{m.Epoch.C, m.CoordInc}
	}
	return m.From
}

// encode serialises m and signs it with key.
func (m *message) encode(key ed25519.PrivateKey) []byte {
	w := wbuf{}
	w.fixed([]byte{msgMagic0, msgMagic1, msgVersion, m.Type})
	w.str(m.VON)
	if m.Type != msgBye && m.Type != msgByeAck {
		w.u64(m.Epoch.E)
		w.str(m.Epoch.C)
	}
	switch m.Type {
	case msgPropose:
		w.u64(m.CoordInc)
		w.str(m.From.Name)
		w.u64(m.From.Inc)
		w.u16(uint16(len(m.Recips)))
		for _, r := range m.Recips {
			w.str(r.Name)
			w.u64(r.Inc)
		}
		w.bytes(m.Sealed)
	case msgCommit:
		w.u64(m.CoordInc)
	case msgAck, msgPull, msgBye, msgByeAck:
		w.str(m.From.Name)
		w.u64(m.From.Inc)
	case msgNack:
		w.str(m.From.Name)
		w.u64(m.From.Inc)
		w.u8(m.Reason)
		w.u64(m.High.E)
		w.str(m.High.C)
	}
	sig := ed25519.Sign(key, append([]byte(msgDomain), w.b...))
	return append(w.b, sig...)
}

// decodeMessage parses b; it does not check the signature (verify does). It never
// panics, and keeps no reference to b.
func decodeMessage(b []byte) (*message, error) {
	if len(b) < 4+ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMessage, len(b))
	}
	b = append([]byte(nil), b...)
	body, sig := b[:len(b)-ed25519.SignatureSize], b[len(b)-ed25519.SignatureSize:]
	r := newR(body)
	if r.u8() != msgMagic0 || r.u8() != msgMagic1 || r.u8() != msgVersion {
		return nil, fmt.Errorf("%w: bad magic or version", ErrMessage)
	}
	m := &message{Type: r.u8(), body: body, Sig: sig}
	m.VON = r.str(maxName)
	if m.Type != msgBye && m.Type != msgByeAck {
		m.Epoch = epochID{r.u64(), r.str(maxName)}
	}
	switch m.Type {
	case msgPropose:
		m.CoordInc = r.u64()
		m.From = ref{r.str(maxName), r.u64()}
		n := int(r.u16())
		if n > maxRecips {
			return nil, fmt.Errorf("%w: %d recipients", ErrMessage, n)
		}
		for i := 0; i < n && r.ok; i++ {
			m.Recips = append(m.Recips, ref{r.str(maxName), r.u64()})
		}
		m.Sealed = r.bytes(maxBlob)
	case msgCommit:
		m.CoordInc = r.u64()
	case msgAck, msgPull, msgBye, msgByeAck:
		m.From = ref{r.str(maxName), r.u64()}
	case msgNack:
		m.From = ref{r.str(maxName), r.u64()}
		m.Reason = r.u8()
		m.High = epochID{r.u64(), r.str(maxName)}
	default:
		return nil, fmt.Errorf("%w: type %d", ErrMessage, m.Type)
	}
	if !r.done() {
		return nil, fmt.Errorf("%w: truncated or trailing bytes", ErrMessage)
	}
	return m, nil
}

// verify checks m's signature with pub.
func (m *message) verify(pub ed25519.PublicKey) bool {
	return len(pub) == ed25519.PublicKeySize &&
		ed25519.Verify(pub, append([]byte(msgDomain), m.body...), m.Sig)
}

// hpkeInfo binds a sealed epoch key to the VON, the epoch (number and coordinator
// with its incarnation) and the recipient's name and incarnation.
func hpkeInfo(von string, id epochID, coordInc uint64, to ref) []byte {
	w := wbuf{b: []byte(hpkeInfoDomain)}
	w.str(von)
	w.u64(id.E)
	w.str(id.C)
	w.u64(coordInc)
	w.str(to.Name)
	w.u64(to.Inc)
	return w.b
}

// ackPayload is what this member appends to its probe acks: its sending epoch, so
// a prober that lags behind learns it and pulls the key.
func encodeAckPayload(id epochID) []byte {
	w := wbuf{}
	w.fixed([]byte{msgMagic0, 'P', msgVersion})
	w.u64(id.E)
	w.str(id.C)
	return w.b
}

func decodeAckPayload(b []byte) (epochID, bool) {
	r := newR(b)
	if r.u8() != msgMagic0 || r.u8() != 'P' || r.u8() != msgVersion {
		return epochID{}, false
	}
	id := epochID{r.u64(), r.str(maxName)}
	return id, r.done() && id.E > 0
}
