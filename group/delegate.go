package group

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/vonproject/von/credential"
)

// delegate implements memberlist's Delegate, EventDelegate, AliveDelegate,
// MergeDelegate and PingDelegate for a Group. memberlist calls the event and alive
// methods with its node lock held, so they only touch the Group's own state (under
// g.mu) and never call back into memberlist; message handling is queued to the
// Group's loop.
type delegate struct{ g *Group }

var (
	_ memberlist.Delegate      = delegate{}
	_ memberlist.EventDelegate = delegate{}
	_ memberlist.AliveDelegate = delegate{}
	_ memberlist.MergeDelegate = delegate{}
	_ memberlist.PingDelegate  = delegate{}
)

// NodeMeta returns this member's signed meta (checked ≤ limit by Start).
func (d delegate) NodeMeta(limit int) []byte {
	meta := *d.g.meta.Load()
	if len(meta) > limit {
		return nil
	}
	return meta
}

// NotifyMsg queues a rekey message; a full queue drops it (every message is
// retried or recovered by a pull).
func (d delegate) NotifyMsg(b []byte) {
	if len(b) == 0 {
		return
	}
	if h := d.g.cfg.hooks; h != nil && h.dropIn != nil && len(b) > 3 && h.dropIn(b[3]) {
		return
	}
	select {
	case d.g.inbox <- inbound{raw: append([]byte(nil), b...)}:
	default:
		d.g.log.Debug("group: inbox full, dropping a rekey message")
	}
}

// GetBroadcasts: the group gossips nothing of its own.
func (d delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState: no state beyond memberlist's is exchanged on push/pull.
func (d delegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState: see LocalState.
func (d delegate) MergeRemoteState(buf []byte, join bool) {}

// NotifyAlive vetoes nodes whose meta does not verify (see verifyMeta). Known nodes
// with unchanged meta and address are accepted without re-verification, so a member
// admitted before its credential expired stays (expiry gates joining, see
// credential.proto).
func (d delegate) NotifyAlive(n *memberlist.Node) error {
	_, err := d.g.admit(n, false)
	return err
}

// NotifyMerge rejects a push/pull merge (a join or a partition heal) that carries a
// node failing verification. Expired credentials are tolerated here: NotifyAlive
// still refuses each such node that is not already a member, but the rest of the
// cluster's state is merged.
func (d delegate) NotifyMerge(peers []*memberlist.Node) error {
	for _, n := range peers {
		if n.State != memberlist.StateAlive && n.State != memberlist.StateSuspect {
			continue
		}
		if _, err := d.g.admit(n, true); err != nil && !errors.Is(err, credential.ErrExpired) {
			return fmt.Errorf("merge refused: %w", err)
		}
	}
	return nil
}

// NotifyJoin adds a node to the view (memberlist also calls it when a node it held
// dead is alive again).
func (d delegate) NotifyJoin(n *memberlist.Node) { d.g.nodeUp(n) }

// NotifyUpdate handles changed meta: a new incarnation is a restart.
func (d delegate) NotifyUpdate(n *memberlist.Node) { d.g.nodeUp(n) }

// NotifyLeave marks a node departed: left if it said bye (memberlist v0.7.0 does not
// set Node.State here, so it cannot tell), dead otherwise.
func (d delegate) NotifyLeave(n *memberlist.Node) {
	d.g.nodeDown(n.Name, n.State == memberlist.StateLeft)
}

// AckPayload appends this member's sending epoch to its probe acks.
func (d delegate) AckPayload() []byte {
	if p := d.g.ackPayload.Load(); p != nil {
		return *p
	}
	return nil
}

// NotifyPingComplete learns a peer's sending epoch; a lagging member pulls.
func (d delegate) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	id, ok := decodeAckPayload(payload)
	if !ok {
		return
	}
	select {
	case d.g.inbox <- inbound{hint: &hint{from: other.Name, id: id}}:
	default:
	}
}
