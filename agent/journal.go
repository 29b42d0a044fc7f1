package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// JournalFile is the name of the agent journal inside the state directory.
const JournalFile = "journal.json"

// journalVersion 2 added the write-ahead log (LogFile); version 1 journals
// (a snapshot alone) are read too.
const journalVersion = 2

// committedON is a committed partition as the agent holds it.
type committedON struct {
	TxnID string // txn that committed it ("sync@<epoch>" / "register@<epoch>" when pushed)
	Spec  *vonv1.PartitionSpec
	// LeaseExpire is when the failsafe removes it. In memory it carries Go's
	// monotonic reading (durations from receipt); loaded from the journal it
	// is wall clock.
	LeaseExpire time.Time
	Seq         uint64 // journal sequence number of the commit (orders capacity precedence)
	Epoch       uint64 // leader epoch of the call that committed it
}

// heldTxn is a prepared hold waiting for the decision.
type heldTxn struct {
	TxnID      string
	Spec       *vonv1.PartitionSpec
	HoldExpire time.Time
	Seq        uint64
	Epoch      uint64
}

// Ops recorded in the txn history.
const (
	opPrepare = "prepare"
	opCommit  = "commit"
	opAbort   = "abort"
	opRelease = "release"
	opEnd     = "end" // how a hold ended without commit: Reason says (expired, aborted, ...)
)

// outcome is the recorded answer to one 2PC call, returned again on a retry.
type outcome struct {
	Op          string    `json:"op"`
	TxnID       string    `json:"txn_id"`
	OnID        uint32    `json:"on_id"`
	Vote        string    `json:"vote,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	Flag        bool      `json:"flag,omitempty"` // already_committed / dropped / removed
	LeaseExpire time.Time `json:"lease_expire_time,omitzero"`
	Time        time.Time `json:"time"`
}

type histKey struct{ op, txn string }

// history is a bounded FIFO of outcomes, keyed by (op, txn_id).
// history remembers txn outcomes for idempotent retries, oldest dropped first.
// Refused Prepares are kept apart, in a bound of their own, so that a stream of
// refusals cannot push out the commits, aborts and releases retries rely on.
type history struct {
	max     int
	order   []histKey // decisive outcomes
	refs    []histKey // refused prepares
	m       map[histKey]*outcome
	pending []histOp // changes not yet journaled
}

func newHistory(max int) *history { return &history{max: max, m: map[histKey]*outcome{}} }

func (o *outcome) refusal() bool {
	return o.Op == opPrepare && o.Vote == vonv1.Vote_VOTE_REFUSED.String()
}

func (h *history) get(op, txn string) (*outcome, bool) {
	o, ok := h.m[histKey{op, txn}]
	return o, ok
}

func (h *history) put(o outcome) {
	k := histKey{o.Op, o.TxnID}
	q := &h.order
	if o.refusal() {
		q = &h.refs
	}
	if _, ok := h.m[k]; !ok {
		*q = append(*q, k)
	}
	h.m[k] = &o
	h.pending = append(h.pending, histOp{Put: &o})
	for len(*q) > h.max {
		delete(h.m, (*q)[0])
		*q = (*q)[1:]
	}
}

func (h *history) del(op, txn string) {
	k := histKey{op, txn}
	if _, ok := h.m[k]; !ok {
		return
	}
	delete(h.m, k)
	h.pending = append(h.pending, histOp{Op: op, TxnID: txn, Delete: true})
	for _, q := range []*[]histKey{&h.order, &h.refs} {
		if i := slices.Index(*q, k); i >= 0 {
			*q = slices.Delete(*q, i, i+1)
		}
	}
}

func (h *history) list() []outcome {
	out := make([]outcome, 0, len(h.order)+len(h.refs))
	for _, k := range append(slices.Clone(h.order), h.refs...) {
		out = append(out, *h.m[k])
	}
	return out
}

// journalFile is the on-disk form (docs/agent.md describes it).
type journalFile struct {
	Version     int    `json:"version"`
	Node        string `json:"node"`
	LeaderEpoch uint64 `json:"leader_epoch"`
	// The manager cluster the agent follows, and when it was created.
	Cluster        string    `json:"cluster,omitempty"`
	ClusterCreated time.Time `json:"cluster_created,omitzero"`
	// The highest etcd revision of a Commit, Release or Sync applied (Syncs
	// read below it are stale).
	StateRevision uint64 `json:"state_revision,omitempty"`
	// LSN is the last log record the snapshot includes.
	LSN       uint64        `json:"lsn,omitempty"`
	Seq       uint64        `json:"seq"`
	SavedTime time.Time     `json:"saved_time"`
	Committed []journalON   `json:"committed"`
	Prepared  []journalHold `json:"prepared"`
	History   []outcome     `json:"history"`
}

type journalON struct {
	OnID            uint32          `json:"on_id"`
	TxnID           string          `json:"txn_id"`
	Epoch           uint64          `json:"epoch"`
	Seq             uint64          `json:"seq"`
	LeaseExpireTime time.Time       `json:"lease_expire_time"`
	Spec            json.RawMessage `json:"spec"`
}

type journalHold struct {
	TxnID          string          `json:"txn_id"`
	OnID           uint32          `json:"on_id"`
	Epoch          uint64          `json:"epoch"`
	Seq            uint64          `json:"seq"`
	HoldExpireTime time.Time       `json:"hold_expire_time"`
	Spec           json.RawMessage `json:"spec"`
}

// state is everything the journal keeps. The agent guards it with its mutex.
type state struct {
	epoch    uint64 // the highest leader epoch seen within cluster
	cluster  string // the manager cluster followed ("" until one is learned)
	created  time.Time
	stateRev uint64 // highest state_revision applied (within cluster)

	seq       uint64
	lsn       uint64 // last journal record (snapshot or log) loaded
	committed map[uint32]*committedON
	holds     map[string]*heldTxn // by txn id
	hist      *history
}

func newState(histMax int) *state {
	return &state{committed: map[uint32]*committedON{}, holds: map[string]*heldTxn{}, hist: newHistory(histMax)}
}

func (s *state) nextSeq() uint64 { s.seq++; return s.seq }

var (
	specJSON      = protojson.MarshalOptions{UseProtoNames: true}
	specUnmarshal = protojson.UnmarshalOptions{}
)

// encode is the snapshot of s, including log records up to lsn.
func (s *state) encode(node string, now time.Time, lsn uint64) ([]byte, error) {
	j := journalFile{Version: journalVersion, Node: node, LeaderEpoch: s.epoch, Cluster: s.cluster, ClusterCreated: s.created, StateRevision: s.stateRev,
		LSN: lsn, Seq: s.seq, SavedTime: now.UTC(),
		Committed: make([]journalON, 0, len(s.committed)), Prepared: []journalHold{}, History: s.hist.list()}
	for id, c := range s.committed {
		e, err := encodeON(id, c)
		if err != nil {
			return nil, err
		}
		j.Committed = append(j.Committed, e)
	}
	sort.Slice(j.Committed, func(a, b int) bool { return j.Committed[a].OnID < j.Committed[b].OnID })
	for _, h := range s.holds {
		e, err := encodeHold(h)
		if err != nil {
			return nil, err
		}
		j.Prepared = append(j.Prepared, e)
	}
	sort.Slice(j.Prepared, func(a, b int) bool { return j.Prepared[a].Seq < j.Prepared[b].Seq })
	return json.Marshal(j)
}

// loadJournal reads the snapshot dir/journal.json; a missing file is an empty
// state. openJournal replays the log after it.
func loadJournal(dir, node string, histMax int) (*state, bool, error) {
	path := filepath.Join(dir, JournalFile)
	s := newState(histMax)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("%w: read journal: %w", ErrUnavailable, err)
	}
	var j journalFile
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, false, invalidf("journal %s is corrupt (%v); move it away to start empty (the manager re-drives the committed state on registration)", path, err)
	}
	if j.Version != journalVersion && j.Version != 1 {
		return nil, false, invalidf("journal %s has version %d, this agent reads versions 1 and %d", path, j.Version, journalVersion)
	}
	if j.Node != node {
		return nil, false, invalidf("journal %s belongs to node %q, not %q: use another --state-dir", path, j.Node, node)
	}
	s.epoch, s.seq, s.cluster, s.created, s.stateRev, s.lsn = j.LeaderEpoch, j.Seq, j.Cluster, j.ClusterCreated, j.StateRevision, j.LSN
	for _, c := range j.Committed {
		on, err := c.decode()
		if err != nil {
			return nil, false, invalidf("journal %s: %v", path, err)
		}
		s.committed[c.OnID] = on
	}
	for _, h := range j.Prepared {
		held, err := h.decode()
		if err != nil {
			return nil, false, invalidf("journal %s: %v", path, err)
		}
		s.holds[h.TxnID] = held
	}
	for _, o := range j.History {
		s.hist.put(o)
	}
	s.hist.pending = nil
	return s, true, nil
}

// writeFileAtomic writes data to dir/name via a temporary file, fsync and
// rename, then fsyncs the directory, so a crash leaves the old or the new file.
func writeFileAtomic(dir, name string, data []byte) error {
	tmp, err := os.CreateTemp(dir, name+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
