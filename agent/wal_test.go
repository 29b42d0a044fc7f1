package agent

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// comparable flattens a state for comparison (times at wall-clock precision,
// as the disk holds them).
func flat(t *testing.T, s *state) string {
	t.Helper()
	b, err := s.encode("r1", time.Unix(0, 0), 0)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func lines(t *testing.T, dir string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, LogFile))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte("\n"))
}

// Every kind of state change survives a restart through the log, each costs
// one appended record (the snapshot is not rewritten), and an unchanged
// state writes nothing.
func TestJournalLogReplaysEveryChange(t *testing.T) {
	dir := t.TempDir()
	j, st, found, err := openJournal(dir, "r1", 4)
	if err != nil || found {
		t.Fatal(found, err)
	}
	defer func() { j.close() }()
	exp := time.Now().Add(time.Minute)
	persist := func() {
		t.Helper()
		if err := j.persist(st, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	persist() // the first write is a snapshot
	snap, err := os.Stat(filepath.Join(dir, JournalFile))
	if err != nil {
		t.Fatal(err)
	}
	steps := []func(){
		func() { st.epoch, st.cluster, st.created = 9, "c1", exp.Add(-time.Hour).Round(0) },
		func() {
			st.holds["t1"] = &heldTxn{TxnID: "t1", Spec: spec(1, 1e6, time.Minute), HoldExpire: exp, Seq: st.nextSeq(), Epoch: 9}
			st.hist.put(outcome{Op: opPrepare, TxnID: "t1", OnID: 1, Vote: "VOTE_PREPARED", Time: exp})
		},
		func() {
			h := st.holds["t1"]
			delete(st.holds, "t1")
			st.committed[1] = &committedON{TxnID: "t1", Spec: h.Spec, LeaseExpire: exp, Seq: st.nextSeq(), Epoch: 9}
			st.stateRev = 77
			st.hist.put(outcome{Op: opCommit, TxnID: "t1", OnID: 1, LeaseExpire: exp, Time: exp})
		},
		func() {
			st.committed[2] = &committedON{TxnID: "t2", Spec: spec(2, 2e6, time.Minute), LeaseExpire: exp, Seq: st.nextSeq(), Epoch: 9}
			st.committed[3] = &committedON{TxnID: "t3", Spec: spec(3, 3e6, time.Minute), LeaseExpire: exp, Seq: st.nextSeq(), Epoch: 9}
		},
		func() { // a refresh moves leases in place
			for _, c := range st.committed {
				c.LeaseExpire = exp.Add(time.Minute)
			}
		},
		func() { // a sync replaces one spec, a release drops another
			st.committed[2] = &committedON{TxnID: "sync@9", Spec: spec(2, 5e6, time.Minute), LeaseExpire: exp, Seq: st.nextSeq(), Epoch: 9}
			delete(st.committed, 3)
			st.hist.put(outcome{Op: opRelease, TxnID: "r3", OnID: 3, Flag: true, Time: exp})
		},
		func() { // history beyond its bound, and a removal
			for _, x := range []string{"a", "b", "c", "d"} {
				st.hist.put(outcome{Op: opAbort, TxnID: x, Time: exp})
			}
			st.hist.del(opAbort, "c")
		},
	}
	for i, step := range steps {
		step()
		before := lines(t, dir)
		persist()
		if got := lines(t, dir); got != before+1 {
			t.Fatalf("step %d: the log grew by %d records, want 1", i, got-before)
		}
		persist()
		if got := lines(t, dir); got != before+1 {
			t.Fatalf("step %d: persisting an unchanged state appended a record", i)
		}
		_, re, _, err := openJournal(dir, "r1", 4)
		if err != nil {
			t.Fatalf("step %d: reopen: %v", i, err)
		}
		if a, b := flat(t, st), flat(t, re); a != b {
			t.Fatalf("step %d: replayed state differs:\n%s\nwant\n%s", i, b, a)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, JournalFile)); err != nil || !fi.ModTime().Equal(snap.ModTime()) || fi.Size() != snap.Size() {
		t.Fatalf("the snapshot was rewritten: %v %v", fi, err)
	}

	// A torn last record (crash mid-write) is cut; the state before it loads.
	want := flat(t, st)
	f, err := os.OpenFile(filepath.Join(dir, LogFile), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(`{"lsn":99,"leader_epo`)
	f.Close()
	j.close()
	j, re, _, err := openJournal(dir, "r1", 4)
	if err != nil {
		t.Fatal(err)
	}
	if got := flat(t, re); got != want {
		t.Fatalf("after a torn write:\n%s\nwant\n%s", got, want)
	}
	st = re
	st.committed[4] = &committedON{TxnID: "t4", Spec: spec(4, 1e6, time.Minute), LeaseExpire: exp, Seq: st.nextSeq(), Epoch: 9}
	persist()
	j.close()
	if _, re, _, err = openJournal(dir, "r1", 4); err != nil || re.committed[4] == nil {
		t.Fatalf("a record after the cut torn one: %v %v", re, err)
	}

	// A bad record with good ones after it is corruption, not a torn write.
	b, _ := os.ReadFile(filepath.Join(dir, LogFile))
	ls := strings.SplitAfter(string(b), "\n")
	ls[1] = "garbage\n"
	os.WriteFile(filepath.Join(dir, LogFile), []byte(strings.Join(ls, "")), 0o600)
	if _, _, _, err := openJournal(dir, "r1", 4); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt log: %v", err)
	}
	j, _, _, _ = openJournal(t.TempDir(), "r1", 4) // for the deferred close
}

// The log is folded into a new snapshot when it outgrows its bound; records
// the snapshot already holds are skipped on replay (a crash between the two).
func TestJournalCompacts(t *testing.T) {
	oldMin, oldRatio := compactMin, compactRatio
	compactMin, compactRatio = 2000, 1
	defer func() { compactMin, compactRatio = oldMin, oldRatio }()
	dir := t.TempDir()
	j, st, _, err := openJournal(dir, "r1", 8)
	if err != nil {
		t.Fatal(err)
	}
	defer j.close()
	exp := time.Now().Add(time.Minute)
	snapshots := 0
	for i := range 50 {
		id := uint32(i%10 + 1)
		st.committed[id] = &committedON{TxnID: "t", Spec: spec(id, 1e6, time.Minute), LeaseExpire: exp, Seq: st.nextSeq(), Epoch: 1}
		if i%3 == 0 {
			delete(st.committed, uint32((i+5)%10+1))
		}
		size := j.logSize
		if err := j.persist(st, time.Now()); err != nil {
			t.Fatal(err)
		}
		if j.logSize < size {
			snapshots++
		}
		if j.logSize > 4*compactMin {
			t.Fatalf("log at %d bytes, bound %d", j.logSize, compactMin)
		}
	}
	if snapshots == 0 {
		t.Fatal("the log was never compacted")
	}
	_, re, _, err := openJournal(dir, "r1", 8)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := flat(t, st), flat(t, re); a != b {
		t.Fatalf("after compaction:\n%s\nwant\n%s", b, a)
	}
	// A stale log (all its records in the snapshot) is skipped.
	stale := append([]byte(nil), mustRead(t, filepath.Join(dir, LogFile))...)
	st.committed[99] = &committedON{TxnID: "t", Spec: spec(99, 1e6, time.Minute), LeaseExpire: exp, Seq: st.nextSeq(), Epoch: 1}
	if err := j.snapshot(st, time.Now()); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, LogFile), stale, 0o600)
	_, re, _, err = openJournal(dir, "r1", 8)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(flat(t, st), flat(t, re)) {
		t.Fatal("a stale log changed the state")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
