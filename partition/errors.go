package partition

import "errors"

// Sentinel errors. Callers test them with errors.Is; the wrapped message says
// which interface, ON or kernel object was involved.
var (
	// ErrUnsupportedPlatform: the package needs Linux.
	ErrUnsupportedPlatform = errors.New("partition: unsupported platform (Linux only)")
	// ErrInvalid: the desired state or the configuration is malformed.
	ErrInvalid = errors.New("partition: invalid desired state")
	// ErrOverbooked: the ONs reserved on an interface exceed its capacity.
	ErrOverbooked = errors.New("partition: reservations exceed interface capacity")
	// ErrNoSuchInterface: a named interface does not exist in the namespace.
	ErrNoSuchInterface = errors.New("partition: no such interface")
	// ErrForeignQdisc: the interface has a root qdisc this package did not
	// install; set Config.ForceRootQdisc to replace it.
	ErrForeignQdisc = errors.New("partition: interface has a foreign root qdisc")
	// ErrClassesExhausted: no free 16-bit HTB class minor is left for a new ON.
	ErrClassesExhausted = errors.New("partition: HTB class ids exhausted")
	// ErrPinSlotsExhausted: too many distinct (next hop, egress) pairs.
	ErrPinSlotsExhausted = errors.New("partition: path-pin slots exhausted")
	// ErrKernelFeature: the kernel lacks something the data plane needs; the
	// message names it.
	ErrKernelFeature = errors.New("partition: kernel feature missing")
	// ErrKernel: a kernel operation failed.
	ErrKernel = errors.New("partition: kernel operation failed")
	// ErrRolledBack wraps the cause of a failed Apply whose partial changes
	// were undone.
	ErrRolledBack = errors.New("partition: change failed and was rolled back")
	// ErrRollbackFailed: a failed Apply could not be fully undone.
	ErrRollbackFailed = errors.New("partition: rollback incomplete")
	// ErrStore: the allocation store could not be read or written.
	ErrStore = errors.New("partition: state store")
	// ErrClosed: the Router was closed.
	ErrClosed = errors.New("partition: router closed")
)
