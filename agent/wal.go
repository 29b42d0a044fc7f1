package agent

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	vonv1 "github.com/vonproject/von/proto/von/v1"
)

// LogFile is the journal's write-ahead log inside the state directory: the
// changes since the snapshot in JournalFile, one JSON record per line.
const LogFile = "journal.log"

// The log is folded into a new snapshot once it outgrows both compactMin and
// compactRatio times the last snapshot, so replay on start stays short and a
// state change costs one appended record (one fsync), not a rewrite of the
// whole state.
var (
	compactMin   int64 = 1 << 20
	compactRatio int64 = 2
)

// walRecord is one state change: the scalar fields as they are after it, and
// the entries it added, changed or removed.
type walRecord struct {
	LSN            uint64        `json:"lsn"`
	LeaderEpoch    uint64        `json:"leader_epoch"`
	Cluster        string        `json:"cluster,omitempty"`
	ClusterCreated time.Time     `json:"cluster_created,omitzero"`
	StateRevision  uint64        `json:"state_revision,omitempty"`
	Seq            uint64        `json:"seq"`
	Put            []journalON   `json:"put,omitempty"`    // committed ONs new or changed
	Leases         []leaseGroup  `json:"leases,omitempty"` // committed ONs whose lease alone moved
	Del            []uint32      `json:"del,omitempty"`    // committed ONs gone
	Hold           []journalHold `json:"hold,omitempty"`   // prepared holds new or changed
	Unhold         []string      `json:"unhold,omitempty"` // prepared holds gone, by txn
	Hist           []histOp      `json:"hist,omitempty"`   // history changes in order
}

type leaseGroup struct {
	Expire time.Time `json:"expire"`
	IDs    []uint32  `json:"ids"`
}

// histOp is one history change: a put, or the removal of (Op, TxnID).
type histOp struct {
	Put    *outcome `json:"put,omitempty"`
	Op     string   `json:"op,omitempty"`
	TxnID  string   `json:"txn_id,omitempty"`
	Delete bool     `json:"delete,omitempty"`
}

// persisted is what the journal on disk says of one committed ON: the entry
// it was written from and the fields that can change in place.
type persisted struct {
	c     *committedON
	spec  *vonv1.PartitionSpec
	txn   string
	exp   time.Time
	seq   uint64
	epoch uint64
}

// journal keeps an agent's state on disk: a snapshot (JournalFile) and a log
// of the changes since (LogFile). It remembers what it wrote, so a change
// costs a record of what differs.
type journal struct {
	dir, node string
	log       *os.File // nil: the next write is a snapshot
	logSize   int64
	snapSize  int64
	lsn       uint64

	// What the disk holds; compared with the state on each write.
	header    walRecord
	committed map[uint32]persisted
	holds     map[string]*heldTxn
}

// openJournal loads the snapshot and replays the log. found says whether
// there was a journal at all.
func openJournal(dir, node string, histMax int) (*journal, *state, bool, error) {
	st, found, err := loadJournal(dir, node, histMax)
	if err != nil {
		return nil, nil, false, err
	}
	j := &journal{dir: dir, node: node, lsn: st.lsn}
	if fi, err := os.Stat(filepath.Join(dir, JournalFile)); err == nil {
		j.snapSize = fi.Size()
	}
	path := filepath.Join(dir, LogFile)
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, nil, false, fmt.Errorf("%w: open journal log: %w", ErrUnavailable, err)
	default:
		good, n, rerr := replay(f, st, &j.lsn)
		if rerr != nil {
			f.Close()
			return nil, nil, false, invalidf("journal log %s is corrupt after %d bytes (%v); move it and %s away to start empty (the manager re-drives the committed state on registration)",
				path, good, rerr, JournalFile)
		}
		if n > 0 {
			found = true
		}
		// A torn last record (a crash mid-write) was never acknowledged: cut it.
		if err := f.Truncate(good); err != nil {
			f.Close()
			return nil, nil, false, fmt.Errorf("%w: truncate journal log: %w", ErrUnavailable, err)
		}
		if _, err := f.Seek(good, io.SeekStart); err != nil {
			f.Close()
			return nil, nil, false, fmt.Errorf("%w: journal log: %w", ErrUnavailable, err)
		}
		j.log, j.logSize = f, good
	}
	j.remember(st)
	st.hist.pending = nil
	return j, st, found, nil
}

// replay applies the log's records to st. It returns the offset after the
// last whole record and how many it applied; a bad record before the last
// line is corruption, a bad or unterminated last line a torn write.
func replay(f *os.File, st *state, lsn *uint64) (good int64, n int, err error) {
	r := bufio.NewReaderSize(f, 1<<16)
	var off int64
	for {
		line, rerr := r.ReadBytes('\n')
		if errors.Is(rerr, io.EOF) {
			return off, n, nil // a partial line without newline is a torn write
		}
		if rerr != nil {
			return off, n, rerr
		}
		var rec walRecord
		if err := json.Unmarshal(line, &rec); err != nil {
			if _, perr := r.Peek(1); errors.Is(perr, io.EOF) {
				return off, n, nil // the last line: torn
			}
			return off, n, err
		}
		off += int64(len(line))
		if rec.LSN <= *lsn {
			continue // already in the snapshot
		}
		if rec.LSN != *lsn+1 {
			return off, n, fmt.Errorf("record %d follows %d", rec.LSN, *lsn)
		}
		if err := st.applyRecord(&rec); err != nil {
			return off, n, err
		}
		*lsn = rec.LSN
		n++
	}
}

// applyRecord replays one record onto s.
func (s *state) applyRecord(r *walRecord) error {
	s.epoch, s.cluster, s.created, s.stateRev, s.seq = r.LeaderEpoch, r.Cluster, r.ClusterCreated, r.StateRevision, r.Seq
	for _, c := range r.Put {
		on, err := c.decode()
		if err != nil {
			return err
		}
		s.committed[c.OnID] = on
	}
	for _, g := range r.Leases {
		for _, id := range g.IDs {
			if c, ok := s.committed[id]; ok {
				c.LeaseExpire = g.Expire
			}
		}
	}
	for _, id := range r.Del {
		delete(s.committed, id)
	}
	for _, h := range r.Hold {
		held, err := h.decode()
		if err != nil {
			return err
		}
		s.holds[h.TxnID] = held
	}
	for _, t := range r.Unhold {
		delete(s.holds, t)
	}
	for _, o := range r.Hist {
		switch {
		case o.Put != nil:
			s.hist.put(*o.Put)
		case o.Delete:
			s.hist.del(o.Op, o.TxnID)
		}
	}
	s.hist.pending = nil
	return nil
}

// remember records st as what the disk holds.
func (j *journal) remember(st *state) {
	j.header = st.header(j.lsn)
	j.committed = make(map[uint32]persisted, len(st.committed))
	for id, c := range st.committed {
		j.committed[id] = persistedOf(c)
	}
	j.holds = make(map[string]*heldTxn, len(st.holds))
	for t, h := range st.holds {
		j.holds[t] = h
	}
}

func persistedOf(c *committedON) persisted {
	return persisted{c: c, spec: c.Spec, txn: c.TxnID, exp: c.LeaseExpire, seq: c.Seq, epoch: c.Epoch}
}

// scalars is r without its lists.
func (r *walRecord) scalars() walRecord {
	return walRecord{LSN: r.LSN, LeaderEpoch: r.LeaderEpoch, Cluster: r.Cluster, ClusterCreated: r.ClusterCreated, StateRevision: r.StateRevision, Seq: r.Seq}
}

func (r walRecord) sameScalars(o walRecord) bool {
	return r.LSN == o.LSN && r.LeaderEpoch == o.LeaderEpoch && r.Cluster == o.Cluster && r.ClusterCreated.Equal(o.ClusterCreated) &&
		r.StateRevision == o.StateRevision && r.Seq == o.Seq
}

func (s *state) header(lsn uint64) walRecord {
	return walRecord{LSN: lsn, LeaderEpoch: s.epoch, Cluster: s.cluster, ClusterCreated: s.created, StateRevision: s.stateRev, Seq: s.seq}
}

// persist makes st durable: one appended record of what changed since the
// last write (nothing at all when nothing did), or a new snapshot when the
// log has grown past its bound or a log write failed.
func (j *journal) persist(st *state, now time.Time) error {
	if j.log == nil || j.logSize > max(compactMin, compactRatio*j.snapSize) {
		return j.snapshot(st, now)
	}
	rec, changed, err := j.diff(st)
	if err != nil || !changed {
		return err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if _, err := j.log.Write(b); err != nil {
		j.brokenLog()
		return fmt.Errorf("append to journal log: %w", err)
	}
	if err := j.log.Sync(); err != nil {
		j.brokenLog()
		return fmt.Errorf("sync journal log: %w", err)
	}
	j.lsn, j.logSize = rec.LSN, j.logSize+int64(len(b))
	j.header = rec.scalars()
	for _, c := range rec.Put {
		j.committed[c.OnID] = persistedOf(st.committed[c.OnID])
	}
	for _, g := range rec.Leases {
		for _, id := range g.IDs {
			j.committed[id] = persistedOf(st.committed[id])
		}
	}
	for _, id := range rec.Del {
		delete(j.committed, id)
	}
	for _, h := range rec.Hold {
		j.holds[h.TxnID] = st.holds[h.TxnID]
	}
	for _, t := range rec.Unhold {
		delete(j.holds, t)
	}
	st.hist.pending = nil
	return nil
}

// brokenLog gives up on the log after a failed write (it may end in a torn
// record): the next write is a full snapshot, which starts a new log.
func (j *journal) brokenLog() {
	if j.log != nil {
		j.log.Close()
		j.log = nil
	}
}

// diff is the record that brings the disk from what it holds to st.
func (j *journal) diff(st *state) (*walRecord, bool, error) {
	rec := st.header(j.lsn + 1)
	cmp := rec
	cmp.LSN = j.header.LSN
	changed := !cmp.sameScalars(j.header)
	leases := map[time.Time][]uint32{}
	for id, c := range st.committed {
		p, ok := j.committed[id]
		now := persistedOf(c)
		switch {
		case ok && p == now:
			continue
		case ok && p.c == c && p.spec == c.Spec && p.txn == c.TxnID && p.seq == c.Seq && p.epoch == c.Epoch:
			leases[c.LeaseExpire] = append(leases[c.LeaseExpire], id)
		default:
			e, err := encodeON(id, c)
			if err != nil {
				return nil, false, err
			}
			rec.Put = append(rec.Put, e)
		}
		changed = true
	}
	for exp, ids := range leases {
		slices.Sort(ids)
		rec.Leases = append(rec.Leases, leaseGroup{Expire: exp.Round(0).UTC(), IDs: ids})
	}
	slices.SortFunc(rec.Leases, func(a, b leaseGroup) int { return a.Expire.Compare(b.Expire) })
	slices.SortFunc(rec.Put, func(a, b journalON) int { return int(a.OnID) - int(b.OnID) })
	for id := range j.committed {
		if _, ok := st.committed[id]; !ok {
			rec.Del = append(rec.Del, id)
			changed = true
		}
	}
	slices.Sort(rec.Del)
	for t, h := range st.holds {
		if j.holds[t] != h {
			e, err := encodeHold(h)
			if err != nil {
				return nil, false, err
			}
			rec.Hold = append(rec.Hold, e)
			changed = true
		}
	}
	for t := range j.holds {
		if _, ok := st.holds[t]; !ok {
			rec.Unhold = append(rec.Unhold, t)
			changed = true
		}
	}
	slices.Sort(rec.Unhold)
	if len(st.hist.pending) > 0 {
		rec.Hist, changed = st.hist.pending, true
	}
	return &rec, changed, nil
}

// snapshot writes the whole state as a new JournalFile and starts an empty
// log after it.
func (j *journal) snapshot(st *state, now time.Time) error {
	lsn := j.lsn + 1
	b, err := st.encode(j.node, now, lsn)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(j.dir, JournalFile, b); err != nil {
		return err
	}
	j.lsn, j.snapSize = lsn, int64(len(b))
	j.remember(st)
	st.hist.pending = nil
	// Records in an old log are all ≤ lsn now: replay skips them, so a
	// failure from here on loses nothing.
	j.brokenLog()
	f, err := os.OpenFile(filepath.Join(j.dir, LogFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil // the next write tries again
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil
	}
	_ = f.Sync()
	j.log, j.logSize = f, 0
	return nil
}

func (j *journal) close() { j.brokenLog() }

func encodeON(id uint32, c *committedON) (journalON, error) {
	b, err := specJSON.Marshal(c.Spec)
	if err != nil {
		return journalON{}, err
	}
	return journalON{OnID: id, TxnID: c.TxnID, Epoch: c.Epoch, Seq: c.Seq, LeaseExpireTime: c.LeaseExpire.Round(0).UTC(), Spec: b}, nil
}

func encodeHold(h *heldTxn) (journalHold, error) {
	b, err := specJSON.Marshal(h.Spec)
	if err != nil {
		return journalHold{}, err
	}
	return journalHold{TxnID: h.TxnID, OnID: h.Spec.GetOnId(), Epoch: h.Epoch, Seq: h.Seq, HoldExpireTime: h.HoldExpire.Round(0).UTC(), Spec: b}, nil
}

func (c journalON) decode() (*committedON, error) {
	spec, err := decodeSpec(c.Spec, c.OnID)
	if err != nil {
		return nil, fmt.Errorf("committed ON %d has a bad spec (%w)", c.OnID, err)
	}
	return &committedON{TxnID: c.TxnID, Spec: spec, LeaseExpire: c.LeaseExpireTime, Seq: c.Seq, Epoch: c.Epoch}, nil
}

func (h journalHold) decode() (*heldTxn, error) {
	spec, err := decodeSpec(h.Spec, h.OnID)
	if err != nil {
		return nil, fmt.Errorf("prepared txn %q has a bad spec (%w)", h.TxnID, err)
	}
	return &heldTxn{TxnID: h.TxnID, Spec: spec, HoldExpire: h.HoldExpireTime, Seq: h.Seq, Epoch: h.Epoch}, nil
}

func decodeSpec(b json.RawMessage, id uint32) (*vonv1.PartitionSpec, error) {
	spec := &vonv1.PartitionSpec{}
	if err := specUnmarshal.Unmarshal(bytes.TrimSpace(b), spec); err != nil {
		return nil, err
	}
	if spec.GetOnId() != id {
		return nil, fmt.Errorf("spec names ON %d", spec.GetOnId())
	}
	return spec, nil
}
