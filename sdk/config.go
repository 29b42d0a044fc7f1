package sdk

import (
	"errors"
	"io"
	"log/slog"
	"time"

	"github.com/vonproject/von/group"
	"github.com/vonproject/von/pki"
	"github.com/vonproject/von/seal"
	"github.com/vonproject/von/wire"
)

// Config says which VON to join and as whom. Zero values take the defaults shown.
type Config struct {
	// Manager is the von-manager's gRPC address ("host:7400").
	Manager string
	// TLS is this process's certificate (kind user; named after Member, or
	// the ON's owner) for the manager connection. Insecure must be set instead
	// to talk to a manager running --insecure; one of the two is required.
	TLS      *pki.Material
	Insecure bool
	// ON is the reservation's name.
	ON string
	// Member is this member's name: one of the reservation's members (a host of the
	// topology). Its address is where the socket binds.
	Member string

	// Netns, if set, names a network namespace (as `ip netns` does, or a path to one):
	// the data and gossip socket lives there, the manager connection in the current
	// namespace. Linux only.
	Netns string
	// ListenAddr overrides where the ON socket binds ("ip:port"). Default: the
	// member's topology address and Port. Loopback tests use "127.0.0.1:0".
	ListenAddr string
	// Port is the ON UDP port (wire.DefaultPort, 4750).
	Port int
	// DSCP is the ON codepoint set on every packet (wire.DefaultDSCP, 44).
	DSCP int

	// KeepAlive is how often the ON's lease is renewed (default: a third of the
	// reservation's TTL, between 1 s and 1 min). Negative disables renewing.
	KeepAlive time.Duration
	// JoinTimeout bounds Join when ctx has no deadline (30 s).
	JoinTimeout time.Duration
	// RecvBuffer is how many received messages wait for Recv before new ones are
	// dropped (and counted in Stats().Overflow) (8192).
	RecvBuffer int

	// RekeyInterval and Grace are the group's (group.Config): periodic rekey
	// (10 min) and how long the previous epoch is still accepted (2 s).
	RekeyInterval time.Duration
	Grace         time.Duration
	// Tuning overrides the group's failure-detection timings (group.DefaultTuning).
	Tuning group.Tuning

	// KeyLog, if set, receives this member's incarnation and every group key it
	// learns, one line each ("VON_MEMBER <on id> <member> <incarnation hex>",
	// "VON_EPOCH <on id> <epoch> <key hex>"), like TLS's SSLKEYLOGFILE: for opening
	// captured packets while debugging. Whoever reads it reads the VON.
	KeyLog io.Writer

	// Logger receives the SDK's and the group's logs; nil discards.
	Logger *slog.Logger
}

// MaxMessage is the largest message Send takes: a 1500-byte MTU less the IPv4 and UDP
// headers and seal.Overhead (the ON header and the AEAD tag).
const MaxMessage = 1500 - 20 - 8 - seal.Overhead

// Defaults.
const (
	DefaultJoinTimeout = 30 * time.Second
	DefaultRecvBuffer  = 8192
)

// Errors. Each is wrapped with the detail.
var (
	// ErrConfig: the Config is incomplete or wrong.
	ErrConfig = errors.New("sdk: bad config")
	// ErrNoSuchON: the manager has no reservation of that name.
	ErrNoSuchON = errors.New("sdk: no such ON")
	// ErrNotCommitted: the reservation exists but is not committed (preparing,
	// released, expired, failed).
	ErrNotCommitted = errors.New("sdk: ON not committed")
	// ErrNotMember: Member is not a member of the ON.
	ErrNotMember = errors.New("sdk: not a member of the ON")
	// ErrCredential: the manager refused a credential, or the group refused it.
	ErrCredential = errors.New("sdk: credential refused")
	// ErrJoin: no member of the group admitted this one in time (none reachable, or
	// every one refused its credential).
	ErrJoin = errors.New("sdk: the group did not admit this member")
	// ErrPermission: the certificate does not allow it (not the ON's owner nor
	// named after the member), or none was accepted.
	ErrPermission = errors.New("sdk: permission denied")
	// ErrManager: the manager could not be reached or failed.
	ErrManager = errors.New("sdk: manager unavailable")
	// ErrUnknownMember: Send to a name that is not a live member of the group.
	ErrUnknownMember = errors.New("sdk: no such live member")
	// ErrTooLarge: the message exceeds MaxMessage.
	ErrTooLarge = errors.New("sdk: message too large")
	// ErrNoOverlay: the reservation has no overlay addresses (Overlay).
	ErrNoOverlay = errors.New("sdk: ON has no overlay addresses")
	// ErrClosed: the VON handle was closed.
	ErrClosed = errors.New("sdk: closed")
)

func (c *Config) defaults() error {
	if c.Manager == "" || c.ON == "" || c.Member == "" {
		return errors.Join(ErrConfig, errors.New("Manager, ON and Member are required"))
	}
	switch {
	case c.TLS == nil && !c.Insecure:
		return errors.Join(ErrConfig, errors.New("give TLS (a user certificate, see pki.Load) or set Insecure for a manager running --insecure"))
	case c.TLS != nil && c.Insecure:
		return errors.Join(ErrConfig, errors.New("TLS and Insecure together: choose one"))
	}
	if c.Port == 0 {
		c.Port = wire.DefaultPort
	}
	if c.DSCP == 0 {
		c.DSCP = wire.DefaultDSCP
	}
	if c.DSCP < 0 || c.DSCP > 63 {
		return errors.Join(ErrConfig, errors.New("DSCP must be 0..63"))
	}
	if c.JoinTimeout == 0 {
		c.JoinTimeout = DefaultJoinTimeout
	}
	if c.RecvBuffer <= 0 {
		c.RecvBuffer = DefaultRecvBuffer
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
