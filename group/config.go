package group

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"time"

	"github.com/hashicorp/memberlist"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// Config configures one member's Group.
type Config struct {
	// VON labels the VON (e.g. the reservation name). It is memberlist's Label (so
	// another VON's gossip is dropped unread) and it is bound into every proof,
	// signature and HPKE info of this package. At most 255 bytes.
	VON string
	// ONID is the ON the group belongs to; credentials must admit to it.
	ONID uint32
	// Member is this member's name (= its credential's claims.member) and its
	// memberlist node name.
	Member string
	// Incarnation is a random, non-zero value chosen per process start. It is in the
	// node meta, in every epoch key's HPKE info and in the SDK's data key derivation.
	Incarnation uint64
	// SignKey is the private half of claims.public_key.
	SignKey ed25519.PrivateKey
	// SealKey is the X25519 private half of claims.seal_public_key.
	SealKey *ecdh.PrivateKey
	// Credential is this member's manager-signed credential.
	Credential *vonv1.MemberCredential
	// VerificationKeys returns the manager's verification keys. It is called once by
	// Start and again, rate-limited (at most every 5 s), when a node presents a
	// credential signed by a key id not in the cache.
	VerificationKeys func(ctx context.Context) ([]*vonv1.VerificationKey, error)

	// Transport carries gossip, probes and rekey messages. nil means memberlist's
	// NetTransport on BindAddr:BindPort (UDP + TCP; used by the tests).
	Transport memberlist.Transport
	// BindAddr and BindPort are used when Transport is nil (port 0: any free port).
	BindAddr string
	BindPort int
	// AdvertiseAddr and AdvertisePort override the address other members reach this
	// one at (and the one it signs). Empty/0: the transport's own.
	AdvertiseAddr string
	AdvertisePort int
	// GossipKey, if set, is memberlist's SecretKey (16, 24 or 32 bytes: AES-GCM on
	// all gossip). Epoch keys never depend on it.
	GossipKey []byte
	// Seeds are "host:port" addresses of other members (the manager's ListMembers).
	// Empty: this member founds the group. This member's own address is skipped.
	Seeds []string

	// RekeyInterval is the period of the coordinator's periodic rekey (default 10m).
	RekeyInterval time.Duration
	// Grace is how long the previous epochs stay accepted for receiving after the
	// switch to a new sending epoch (default 2 s; see the package doc).
	Grace time.Duration

	// Tuning overrides memberlist timings and rekey timers; zero fields take the
	// LAN defaults of DefaultTuning.
	Tuning

	// Logger receives the group's and memberlist's logs; nil discards.
	Logger *slog.Logger

	// OnKey, if set, is called with every epoch key this member installs (for
	// receiving; it may later send with it). It runs under the group's lock: it must
	// not block or call the Group. For key logs that decrypt captures while debugging
	// (sdk.Config.KeyLog); whoever reads them reads the VON.
	OnKey func(EpochKey)

	hooks *testHooks // in-package tests only
}

// Tuning holds the failure-detection, gossip and rekey timings. The defaults
// (DefaultTuning) are chosen for a LAN-sized group (≤ ~100 members, sub-ms RTT); see
// the package doc for how they bound failure detection.
type Tuning struct {
	ProbeInterval           time.Duration // how often each member probes one other (200 ms)
	ProbeTimeout            time.Duration // direct probe ack deadline before indirect probes (100 ms)
	IndirectChecks          int           // members asked to probe indirectly (3)
	SuspicionMult           int           // suspicion timeout = mult × log10(n) × ProbeInterval (3)
	SuspicionMaxTimeoutMult int           // upper bound of the suspicion timeout, × the above (2)
	AwarenessMaxMultiplier  int           // how far a struggling member stretches its probe timings (3)
	GossipInterval          time.Duration // gossip fan-out period (100 ms)
	GossipNodes             int           // members gossiped to per interval (4)
	RetransmitMult          int           // gossip retransmits = mult × log10(n+1) (4)
	PushPullInterval        time.Duration // full state sync period (10 s)
	GossipToTheDeadTime     time.Duration // keep gossiping to dead members, heals partitions (20 s)
	TCPTimeout              time.Duration // stream dial/IO deadline: push/pull, reliable sends (1 s)
	RejoinInterval          time.Duration // retry failed members and absent seeds: heals partitions (5 s)

	RekeyDebounce   time.Duration // quiet time after a membership change before rekeying (20 ms)
	RekeyAckTimeout time.Duration // the coordinator commits without members silent this long (500 ms)
	RekeyRetry      time.Duration // resend period for unacked proposals and missed commits (100 ms)
}

// DefaultTuning returns the LAN defaults.
func DefaultTuning() Tuning {
	return Tuning{
		ProbeInterval:           200 * time.Millisecond,
		ProbeTimeout:            100 * time.Millisecond,
		IndirectChecks:          3,
		SuspicionMult:           3,
		SuspicionMaxTimeoutMult: 2,
		AwarenessMaxMultiplier:  3,
		GossipInterval:          100 * time.Millisecond,
		GossipNodes:             4,
		RetransmitMult:          4,
		PushPullInterval:        10 * time.Second,
		GossipToTheDeadTime:     20 * time.Second,
		TCPTimeout:              time.Second,
		RejoinInterval:          5 * time.Second,
		RekeyDebounce:           20 * time.Millisecond,
		RekeyAckTimeout:         500 * time.Millisecond,
		RekeyRetry:              100 * time.Millisecond,
	}
}

const (
	defaultRekeyInterval = 10 * time.Minute
	defaultGrace         = 2 * time.Second
)

// withDefaults fills zero fields of t from DefaultTuning.
func (t Tuning) withDefaults() Tuning {
	d := DefaultTuning()
	setD := func(v *time.Duration, dv time.Duration) {
		if *v <= 0 {
			*v = dv
		}
	}
	setI := func(v *int, dv int) {
		if *v <= 0 {
			*v = dv
		}
	}
	setD(&t.ProbeInterval, d.ProbeInterval)
	setD(&t.ProbeTimeout, d.ProbeTimeout)
	setI(&t.IndirectChecks, d.IndirectChecks)
	setI(&t.SuspicionMult, d.SuspicionMult)
	setI(&t.SuspicionMaxTimeoutMult, d.SuspicionMaxTimeoutMult)
	setI(&t.AwarenessMaxMultiplier, d.AwarenessMaxMultiplier)
	setD(&t.GossipInterval, d.GossipInterval)
	setI(&t.GossipNodes, d.GossipNodes)
	setI(&t.RetransmitMult, d.RetransmitMult)
	setD(&t.PushPullInterval, d.PushPullInterval)
	setD(&t.GossipToTheDeadTime, d.GossipToTheDeadTime)
	setD(&t.TCPTimeout, d.TCPTimeout)
	setD(&t.RejoinInterval, d.RejoinInterval)
	setD(&t.RekeyDebounce, d.RekeyDebounce)
	setD(&t.RekeyAckTimeout, d.RekeyAckTimeout)
	setD(&t.RekeyRetry, d.RekeyRetry)
	return t
}

// apply copies the memberlist part of t into c.
func (t Tuning) apply(c *memberlist.Config) {
	c.ProbeInterval = t.ProbeInterval
	c.ProbeTimeout = t.ProbeTimeout
	c.IndirectChecks = t.IndirectChecks
	c.SuspicionMult = t.SuspicionMult
	c.SuspicionMaxTimeoutMult = t.SuspicionMaxTimeoutMult
	c.AwarenessMaxMultiplier = t.AwarenessMaxMultiplier
	c.GossipInterval = t.GossipInterval
	c.GossipNodes = t.GossipNodes
	c.RetransmitMult = t.RetransmitMult
	c.PushPullInterval = t.PushPullInterval
	c.GossipToTheDeadTime = t.GossipToTheDeadTime
	c.TCPTimeout = t.TCPTimeout
}

// check validates cfg and fills defaults.
func (cfg *Config) check() error {
	switch {
	case cfg.VON == "" || len(cfg.VON) > memberlist.LabelMaxSize:
		return fmt.Errorf("%w: VON label must be 1..%d bytes", ErrConfig, memberlist.LabelMaxSize)
	case cfg.Member == "" || len(cfg.Member) > maxName:
		return fmt.Errorf("%w: Member must be 1..%d bytes", ErrConfig, maxName)
	case cfg.Incarnation == 0:
		return fmt.Errorf("%w: Incarnation must be a random non-zero value", ErrConfig)
	case len(cfg.SignKey) != ed25519.PrivateKeySize:
		return fmt.Errorf("%w: SignKey is %d bytes", ErrConfig, len(cfg.SignKey))
	case cfg.SealKey == nil || cfg.SealKey.Curve() != ecdh.X25519():
		return fmt.Errorf("%w: SealKey must be an X25519 key", ErrConfig)
	case cfg.Credential == nil:
		return fmt.Errorf("%w: no Credential", ErrConfig)
	case cfg.VerificationKeys == nil:
		return fmt.Errorf("%w: no VerificationKeys", ErrConfig)
	}
	if cfg.RekeyInterval <= 0 {
		cfg.RekeyInterval = defaultRekeyInterval
	}
	if cfg.Grace <= 0 {
		cfg.Grace = defaultGrace
	}
	if cfg.Transport == nil && cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	cfg.Tuning = cfg.Tuning.withDefaults()
	return nil
}
