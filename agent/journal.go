package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// JournalFile is the name of the agent journal inside the state directory.
const JournalFile = "journal.json"

const journalVersion = 1

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
type history struct {
	max   int
	order []histKey
	m     map[histKey]*outcome
}

func newHistory(max int) *history { return &history{max: max, m: map[histKey]*outcome{}} }

func (h *history) get(op, txn string) (*outcome, bool) {
	o, ok := h.m[histKey{op, txn}]
	return o, ok
}

func (h *history) put(o outcome) {
	k := histKey{o.Op, o.TxnID}
	if _, ok := h.m[k]; !ok {
		h.order = append(h.order, k)
	}
	h.m[k] = &o
	for len(h.order) > h.max {
		delete(h.m, h.order[0])
		h.order = h.order[1:]
	}
}

func (h *history) del(op, txn string) {
	k := histKey{op, txn}
	if _, ok := h.m[k]; !ok {
		return
	}
	delete(h.m, k)
	for i, o := range h.order {
		if o == k {
			h.order = append(h.order[:i], h.order[i+1:]...)
			break
		}
	}
}

func (h *history) list() []outcome {
	out := make([]outcome, 0, len(h.order))
	for _, k := range h.order {
		out = append(out, *h.m[k])
	}
	return out
}

// journalFile is the on-disk form (docs/agent.md describes it).
type journalFile struct {
	Version     int           `json:"version"`
	Node        string        `json:"node"`
	LeaderEpoch uint64        `json:"leader_epoch"`
	Seq         uint64        `json:"seq"`
	SavedTime   time.Time     `json:"saved_time"`
	Committed   []journalON   `json:"committed"`
	Prepared    []journalHold `json:"prepared"`
	History     []outcome     `json:"history"`
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
	epoch     uint64
	seq       uint64
	committed map[uint32]*committedON
	holds     map[string]*heldTxn // by txn id
	hist      *history
}

func newState(histMax int) *state {
	return &state{committed: map[uint32]*committedON{}, holds: map[string]*heldTxn{}, hist: newHistory(histMax)}
}

func (s *state) nextSeq() uint64 { s.seq++; return s.seq }

var specJSON = protojson.MarshalOptions{UseProtoNames: true}

func (s *state) encode(node string, now time.Time) ([]byte, error) {
	j := journalFile{Version: journalVersion, Node: node, LeaderEpoch: s.epoch, Seq: s.seq, SavedTime: now.UTC(),
		Committed: []journalON{}, Prepared: []journalHold{}, History: s.hist.list()}
	for id, c := range s.committed {
		b, err := specJSON.Marshal(c.Spec)
		if err != nil {
			return nil, err
		}
		j.Committed = append(j.Committed, journalON{OnID: id, TxnID: c.TxnID, Epoch: c.Epoch, Seq: c.Seq,
			LeaseExpireTime: c.LeaseExpire.Round(0).UTC(), Spec: b})
	}
	sort.Slice(j.Committed, func(a, b int) bool { return j.Committed[a].OnID < j.Committed[b].OnID })
	for _, h := range s.holds {
		b, err := specJSON.Marshal(h.Spec)
		if err != nil {
			return nil, err
		}
		j.Prepared = append(j.Prepared, journalHold{TxnID: h.TxnID, OnID: h.Spec.GetOnId(), Epoch: h.Epoch, Seq: h.Seq,
			HoldExpireTime: h.HoldExpire.Round(0).UTC(), Spec: b})
	}
	sort.Slice(j.Prepared, func(a, b int) bool { return j.Prepared[a].Seq < j.Prepared[b].Seq })
	return json.MarshalIndent(j, "", " ")
}

// loadJournal reads dir/journal.json; a missing file is an empty state.
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
	if j.Version != journalVersion {
		return nil, false, invalidf("journal %s has version %d, this agent reads %d", path, j.Version, journalVersion)
	}
	if j.Node != node {
		return nil, false, invalidf("journal %s belongs to node %q, not %q: use another --state-dir", path, j.Node, node)
	}
	s.epoch, s.seq = j.LeaderEpoch, j.Seq
	for _, c := range j.Committed {
		spec := &vonv1.PartitionSpec{}
		if err := protojson.Unmarshal(c.Spec, spec); err != nil || spec.GetOnId() != c.OnID {
			return nil, false, invalidf("journal %s: committed ON %d has a bad spec (%v)", path, c.OnID, err)
		}
		s.committed[c.OnID] = &committedON{TxnID: c.TxnID, Spec: spec, LeaseExpire: c.LeaseExpireTime, Seq: c.Seq, Epoch: c.Epoch}
	}
	for _, h := range j.Prepared {
		spec := &vonv1.PartitionSpec{}
		if err := protojson.Unmarshal(h.Spec, spec); err != nil || spec.GetOnId() != h.OnID {
			return nil, false, invalidf("journal %s: prepared txn %q has a bad spec (%v)", path, h.TxnID, err)
		}
		s.holds[h.TxnID] = &heldTxn{TxnID: h.TxnID, Spec: spec, HoldExpire: h.HoldExpireTime, Seq: h.Seq, Epoch: h.Epoch}
	}
	for _, o := range j.History {
		s.hist.put(o)
	}
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
