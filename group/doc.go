// Package group runs one VON's process group: a memberlist cluster among the ON's
// members with authenticated join, membership events and group-key rekeying.
//
// # Joining
//
// Every member advertises node meta (≤ 512 bytes, memberlist's limit; about 280 in
// practice) carrying its manager-signed credential, its incarnation and a proof of
// possession: Ed25519(claims.public_key, "von.v1.group.join\x00" || VON || node name ||
// advertised address || incarnation). memberlist consults AliveDelegate.NotifyAlive
// for every alive message, whether gossiped or merged from a push/pull, and a node is
// refused unless its credential verifies (manager key, ON id, expiry), names the node,
// the proof verifies with the credential's key and the node speaks from the address it
// signed. NotifyMerge applies the same check to whole push/pull merges. An unknown
// manager key id triggers a rate-limited refresh of VerificationKeys and a push/pull
// with the refused node. Expiry gates admission only: a member admitted before its
// credential expired stays (credential.proto). Start returns once a coordinator has
// sealed the group key to this member (a founder, started without seeds, makes its
// own); a process nobody admits never gets a key, and its Start fails with ErrJoin.
//
// # Events
//
// Join, Leave (graceful), Fail (declared dead) and Rekey (new sending epoch). memberlist
// v0.7.0 does not tell a left node from a dead one in NotifyLeave (Node.State is not
// maintained there), so Leave first sends every member a signed bye directly and waits
// for their confirmations (≤ 300 ms) before memberlist's leave broadcast: a member
// that saw the bye reports Leave and rekeys at once; one that did not reports Fail.
//
// # Rekeying
//
// Epochs are totally ordered by (number, coordinator name), the lower name ranking
// higher at equal numbers. The coordinator is the lowest name among the live verified
// members of the local view. It rekeys after every join, leave and failure (after a
// 20 ms quiet period that coalesces bursts), every RekeyInterval, and whenever its
// sending epoch's recipient list differs from its live view or a verified message
// shows an epoch it cannot hold. A round, all messages signed by their sender and
// sent straight to one member (a packet when it fits, a stream otherwise — never
// gossip, never under the previous key, never to a departed member):
//
//  1. propose, coordinator → each live member: epoch, coordinator and incarnation,
//     the full recipient list (name, incarnation), and the 32-byte epoch key sealed
//     with HPKE (DHKEM(X25519), HKDF-SHA256, AES-256-GCM) to the recipient's X25519
//     key, info = VON, epoch, coordinator, recipient name and incarnation. The epoch
//     number is one above any this member has seen or issued, so an (epoch,
//     coordinator) never names two keys.
//  2. ack, recipient → coordinator: the recipient installed the key for receiving.
//     It refuses (nack) an epoch ranking below the one it sends with, or whose
//     recipient list names a member it knows departed (left, dead, or replaced by
//     another incarnation) — and then, if it is coordinator in its own view, issues a
//     newer epoch.
//  3. commit, coordinator → recipients, once all acked or RekeyAckTimeout (500 ms)
//     passed with at least one ack: start sending with the epoch. A member switches
//     only to an epoch ranking above its current one, so all converge on the highest.
//     After the switch older epochs stay receivable for Grace. A round naming a
//     member that departs meanwhile is abandoned.
//
// Proposals are resent to silent recipients every RekeyRetry. A member that missed
// a round — lost messages, just joined, a lost commit — catches up by itself: probe
// acks carry each member's sending epoch, and a member seeing a higher one (or holding
// a proposal whose commit is late) sends pull to its coordinator, which resends the
// proposal and commit if the member is a recipient and live. Two members may both
// coordinate while views disagree (a partition, a join not yet gossiped); each
// member adopts the highest epoch, refuses lists naming departed members, and once
// views agree the single coordinator finds its epoch's recipients differ from its
// view and issues one for everybody. Members declared dead are contacted again every
// RejoinInterval, so the sides of a healed partition merge (memberlist never contacts
// a dead node by itself).
//
// # Epoch numbers on the wire
//
// The ON header carries the low 16 bits of the 64-bit epoch. ReceiveKeys returns the
// keys whose low bits match among the sending epoch, epochs installed but not yet
// switched to, and older epochs within Grace — a handful at most. Wrap is harmless:
// two live keys could share low bits only if 65,536 epochs were issued within one
// Grace (rounds are ≥ 20 ms apart, so about 100 per 2 s), and the full epoch enters
// the data key derivation, so a packet of another epoch with the same low bits does
// not open. Concurrent coordinators can produce two keys for one epoch number; the
// receiver tries each (AEAD tells).
//
// # Grace
//
// Grace (default 2 s) bounds how long after a switch a packet under the previous
// epoch is still accepted. It covers packets in flight and a member whose commit was
// lost (it pulls after RekeyAckTimeout + RekeyRetry = 0.6 s, retrying every 0.5 s),
// while keeping short the window in which a removed member, which knows the previous
// key, could forge packets under another member's source address.
//
// # Failure detection tuning (DefaultTuning)
//
// memberlist marks a node dead when a suspicion timeout expires; the timeout starts at
// SuspicionMaxTimeoutMult × min and falls to min = SuspicionMult × log10(n) ×
// ProbeInterval as other members confirm the suspicion. memberlist's LAN defaults
// (1 s interval, mult 4, max mult 6) give 6.8–41 s at 50 members. DefaultTuning uses
// ProbeInterval 200 ms, ProbeTimeout 100 ms, SuspicionMult 3, SuspicionMaxTimeoutMult
// 2: at 50 members min = 3 × 1.70 × 0.2 s = 1.02 s, max = 2.04 s. A killed member is
// first probed within about one ProbeInterval (49 probers), suspected after
// ProbeTimeout plus the indirect probes (< 0.4 s), and the second failed probe
// confirms; so every survivor rekeys about 1.5 s after a kill, 2.8 s in the worst
// case, within the 5 s target (measured at 50 members on loopback: 1.5 s mean, 1.9 s
// max; docs/benchmarks.md). A suspected member still has ≥ 1 s to refute. Gossip runs
// every 100 ms to 4 members so the verdict spreads in a few hundred milliseconds;
// AwarenessMaxMultiplier 3 bounds how far an overloaded member stretches its probing.
// A graceful leave does not wait for detection: the coordinator rekeys on the bye, so
// survivors switch within ~0.1–0.3 s (target < 1 s).
//
// # Goroutines
//
// A Group runs one protocol loop, a pool of senders, a key refresher and a rejoiner,
// all stopped and waited for by Close (and Leave), besides memberlist's own, which
// memberlist's Shutdown stops.
package group
