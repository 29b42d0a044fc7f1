package partition

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
)

// State is what a Store keeps across restarts.
type State struct {
	// Minors maps ON id to its HTB class minor (router-wide).
	Minors map[uint32]uint16 `json:"minors"`
	// Next is where the allocator's round-robin search resumes, so a freed
	// minor is not handed to a new ON at once.
	Next uint16 `json:"next"`
	// Desired is the last successfully applied desired state (nil if none).
	Desired *Desired `json:"desired,omitempty"`
}

// Store persists State. Load of a store never saved returns an empty State.
type Store interface {
	Load() (State, error)
	Save(State) error
}

// FileStore keeps State in Dir/partition.json, replaced atomically.
type FileStore struct{ Dir string }

const stateFile = "partition.json"

// Load implements Store.
func (f FileStore) Load() (State, error) {
	b, err := os.ReadFile(filepath.Join(f.Dir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return State{}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("%w: %w", ErrStore, err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("%w: %s: %w", ErrStore, filepath.Join(f.Dir, stateFile), err)
	}
	return s, nil
}

// Save implements Store: write a temporary file, fsync, rename, fsync the dir.
func (f FileStore) Save(s State) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	if err := os.MkdirAll(f.Dir, 0o700); err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	tmp, err := os.CreateTemp(f.Dir, stateFile+".*")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(f.Dir, stateFile)); err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	if d, err := os.Open(f.Dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// memStore is the Store used when none is configured.
type memStore struct{ s State }

func (m *memStore) Load() (State, error) { return m.s, nil }
func (m *memStore) Save(s State) error   { m.s = s; return nil }

// allocator maps 32-bit ON ids to 16-bit HTB class minors.
type allocator struct {
	byID   map[uint32]uint16
	byMin  map[uint16]uint32
	next   uint16
	lo, hi uint16 // inclusive range
}

func newAllocator(lo, hi uint16) *allocator {
	return &allocator{byID: map[uint32]uint16{}, byMin: map[uint16]uint32{}, next: lo, lo: lo, hi: hi}
}

// adopt records an existing id→minor binding; it refuses conflicts.
func (a *allocator) adopt(id uint32, m uint16) bool {
	if m < a.lo || m > a.hi {
		return false
	}
	if cur, ok := a.byID[id]; ok {
		return cur == m
	}
	if _, taken := a.byMin[m]; taken {
		return false
	}
	a.byID[id], a.byMin[m] = m, id
	return true
}

func (a *allocator) minor(id uint32) (uint16, bool) { m, ok := a.byID[id]; return m, ok }
func (a *allocator) id(m uint16) (uint32, bool)     { id, ok := a.byMin[m]; return id, ok }

// retain frees every binding whose id is not in keep.
func (a *allocator) retain(keep map[uint32]bool) {
	for id, m := range a.byID {
		if !keep[id] {
			delete(a.byID, id)
			delete(a.byMin, m)
		}
	}
}

// assign gives id a minor if it has none.
func (a *allocator) assign(id uint32) (uint16, error) {
	if m, ok := a.byID[id]; ok {
		return m, nil
	}
	size := int(a.hi) - int(a.lo) + 1
	if len(a.byID) >= size {
		return 0, fmt.Errorf("%w: all %d class ids in use, cannot add ON %d", ErrClassesExhausted, size, id)
	}
	m := a.next
	for range size {
		if m < a.lo || m > a.hi {
			m = a.lo
		}
		if _, taken := a.byMin[m]; !taken {
			break
		}
		m++
	}
	a.byID[id], a.byMin[m] = m, id
	a.next = m + 1
	if a.next > a.hi || a.next < a.lo {
		a.next = a.lo
	}
	return m, nil
}

func (a *allocator) clone() *allocator {
	c := *a
	c.byID = maps.Clone(a.byID)
	c.byMin = maps.Clone(a.byMin)
	return &c
}

func (a *allocator) state() State {
	return State{Minors: maps.Clone(a.byID), Next: a.next}
}
