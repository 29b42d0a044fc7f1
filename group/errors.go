package group

import "errors"

// Errors of this package. Each is wrapped with the detail (errors.Is works).
var (
	// ErrConfig: the Config is incomplete or inconsistent.
	ErrConfig = errors.New("group: bad config")
	// ErrCredential: this member's own credential does not verify or does not match
	// its keys.
	ErrCredential = errors.New("group: bad own credential")
	// ErrVerificationKeys: the manager's verification keys could not be fetched.
	ErrVerificationKeys = errors.New("group: verification keys unavailable")
	// ErrMetaTooLarge: the node meta (credential, incarnation, proof) exceeds
	// memberlist's 512-byte limit.
	ErrMetaTooLarge = errors.New("group: node meta too large")
	// ErrJoin: Start could not join the group (no seed reachable, or no member
	// admitted this one and sent it the group key) before its context ended.
	ErrJoin = errors.New("group: join failed")
	// ErrClosed: the group was closed.
	ErrClosed = errors.New("group: closed")

	// ErrMeta: a node's meta is malformed.
	ErrMeta = errors.New("group: malformed node meta")
	// ErrNodeCredential: a node's credential does not verify (wraps the
	// credential package's error: ErrWrongON, ErrExpired, ErrUnknownKey, ...).
	ErrNodeCredential = errors.New("group: node credential rejected")
	// ErrMemberMismatch: a node's name differs from its credential's member.
	ErrMemberMismatch = errors.New("group: node name is not the credential's member")
	// ErrAddrMismatch: a node gossips from another address than it signed.
	ErrAddrMismatch = errors.New("group: node address differs from the signed one")
	// ErrProof: a node's proof of possession does not verify with the credential's key.
	ErrProof = errors.New("group: bad proof of possession")

	// ErrMessage: a rekey message is malformed.
	ErrMessage = errors.New("group: malformed rekey message")
)

// ErrLeave: Leave could not broadcast the leave before its deadline (the member
// is shut down anyway; the others detect it as failed).
var ErrLeave = errors.New("group: leave not broadcast")
