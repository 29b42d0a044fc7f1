// Package sdk is what applications import to join a VON: the process group of an ON's
// members, over the ON's reserved, pinned paths.
//
//	v, err := sdk.Join(ctx, sdk.Config{Manager: "mgr:7400", ON: "video", Member: "h1"})
//	defer v.Close()
//	err = v.Send(ctx, "h2", msg)       // or v.Broadcast(ctx, msg)
//	m, err := v.Recv(ctx)              // m.From, m.Data, m.Epoch, m.Path, m.Seq
//	v.Members(); v.Events()
//
// Join asks the manager for the reservation, creates this member's Ed25519 and X25519
// keys, obtains a credential for them (IssueMemberCredential), opens the member's one ON
// socket (UDP, DSCP 44 set on the socket — no privileges needed — bound to the member's
// address and the ON port, in Config.Netns if given), and joins the VON's group (package
// group) with gossip carried inside the ON on that same socket (package gossipnet), so
// the group's own traffic is reserved and pinned like the data. It returns once the
// member holds the group's key.
//
// Every message is sealed once (package seal: a per-sender AES-256-GCM key derived
// from the epoch key; the path byte is not authenticated) and, on a redundant ON, sent
// twice — path 0 and path 1, same sequence number, one sendmmsg. The receiver
// identifies the sender by the source address (its group member), skips copies its
// window has seen, opens, and lets the window (package replay) deliver each message
// exactly once.
//
// While joined, the SDK keeps the ON's lease alive (KeepAlive) and reconnects to the
// manager after it restarts; see docs/groups.md for the design.
package sdk
