// Package gossipnet carries a VON group's memberlist traffic inside the ON: a
// memberlist.Transport (NodeAwareTransport) over a datagram conduit, with packets
// and reliable streams multiplexed on the member's one ON socket.
//
// # Why
//
// A member has one UDP socket, the ON data socket (docs/groups.md). Its datagrams
// are classified into the ON's reserved class on every router and, on a redundant
// ON, sent twice (path 0 and path 1). Running memberlist over that socket keeps
// gossip alive under a best-effort flood and across a cut of one path. The SDK
// implements [Conduit] on the socket (adding the 16-byte ON header with the
// control flag and sending on both paths) and hands every received control
// datagram to [Transport.Deliver]. The conduit may deliver a datagram zero, one
// or two times and may reorder datagrams; this package copes with all of it.
//
// # Datagram format
//
// Every gossipnet datagram (the ON payload after the ON header) starts with a
// one-byte type. All integers are big endian.
//
//	type 0x01 PACKET: a memberlist packet or one fragment of it
//	  0      type
//	  1..8   instance   random 64-bit id of the sending Transport
//	  9..16  seq        per-Transport packet counter, starts at 1
//	  17     frag       fragment index, 0 <= frag < nfrag
//	  18     nfrag      fragment count, 1..64
//	  19..   payload    at least 1 byte
//
//	types 0x02..0x07: stream frames, one fixed 24-byte header
//	  0      type       0x02 SYN, 0x03 SYNACK, 0x04 DATA, 0x05 ACK, 0x06 FIN, 0x07 RST
//	  1..8   stream id  random 64-bit, chosen by the dialer; with the peer's
//	                    address:port it names the stream on both ends
//	  9      flags      0x01 RETX: a retransmission or probe; the receiver answers
//	                    a duplicate segment with an ACK only when RETX is set, so
//	                    the second path copy of a segment costs nothing
//	  10..13 seq        segment number of this DATA/FIN (each side counts from 0;
//	                    FIN consumes one number)
//	  14..17 ack        next segment number expected from the peer (cumulative)
//	  18..19 wnd        segments the sender accepts starting at ack (flow control)
//	  20..23 sack       bit i set: segment ack+1+i was received out of order
//	  24..   payload    DATA only, 1..MaxDatagram-24 bytes; empty for the others
//
// SYN carries only the dialer's wnd, RST only the id; the other frames carry
// valid ack/wnd/sack fields (DATA and FIN piggyback them).
//
// # Packets
//
// WriteTo sends a memberlist packet as one PACKET datagram, or splits it into up
// to 64 fragments when it does not fit ([Transport.PacketPayload] is the largest
// unfragmented size; set memberlist's UDPBufferSize to it). A receiver keeps, per
// source address, the sender's instance and a 1024-entry sliding window over seq,
// so the second copy of a packet (or fragment) is dropped and memberlist sees each
// packet once. The number of sources tracked is bounded (least recently used are
// evicted), as is fragment reassembly (entries, bytes and age). A new instance from
// a source resets that source's window.
//
// # Streams
//
// DialTimeout sends SYN (retransmitted with exponential backoff) and returns when
// SYNACK (or any frame of the stream) arrives, or fails when the timeout passes or
// an RST arrives. Data flows as DATA segments in a sliding window of at most
// Config.Window segments, limited further by the peer's advertised wnd; receivers
// acknowledge cumulatively with a selective-ack bitmap; senders retransmit a
// segment when its RTO (RFC 6298 estimate, doubled per retransmission, clamped to
// [MinRTO, MaxRTO]) expires, or early once a segment sent after it has been
// acknowledged and a reordering allowance has passed (a simplified RACK).
// A zero window is probed. Close queues a FIN after the data and returns at once;
// the stream state is kept until the FIN is acknowledged and the peer's FIN has
// arrived (or IdleTimeout passes). The peer's Read returns io.EOF after all data.
// A stream on which nothing is received for IdleTimeout is reset. After a stream
// ends, its id is remembered for IdleTimeout so late copies of its frames are
// answered (FIN: ACK) or ignored rather than reset; a frame for an unknown stream
// is answered with RST.
//
// One goroutine per Transport drives retransmission; it sleeps while no stream
// is open. Deliver runs on the caller's goroutine and never blocks: a packet that
// finds PacketCh full is dropped, a SYN that finds StreamCh full is dropped (the
// dialer retransmits it) and a SYN beyond MaxStreams is reset. PacketCh and
// StreamCh are never closed, since memberlist's listeners would read nil values
// from a closed channel; Shutdown stops the goroutine, resets every stream and
// makes Deliver ignore further input.
//
// # Limits
//
// There is no congestion control beyond the fixed window and RTO backoff: the
// ON's reserved class is expected to carry the (small) gossip volume. Streams
// have no half-close (Close ends both directions; unread input is discarded)
// and no keepalive (an open stream silent for IdleTimeout is reset). The peer
// of a stream is identified by address:port only, as the ON header has no sender
// field; authenticity is memberlist's concern (labels, encryption, signed meta).
package gossipnet
