package reservation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/vonproject/von/topology"
)

// Direction of traffic over a link: from its A end to its B end, or back.
type Direction uint8

const (
	// AtoB is traffic leaving the link's A end.
	AtoB Direction = iota
	// BtoA is traffic leaving the link's B end.
	BtoA
)

func (d Direction) String() string {
	if d == AtoB {
		return "a->b"
	}
	return "b->a"
}

// Charge is one link direction an ON reserves its rate on.
type Charge struct {
	Link string
	Dir  Direction
}

// Ledger keeps, in etcd, the bandwidth reserved on every link direction and the ON ids
// in use. Every change is one etcd transaction guarded by the mod revisions of the keys
// it read, so concurrent admissions never overbook a link: a loser re-reads and retries.
type Ledger struct {
	cli    *clientv3.Client
	prefix string
	// Quarantine is how long a released ON id stays unusable, so stale packets are
	// never classified into a new ON.
	Quarantine time.Duration
	// MaxAttempts bounds the retries of a contended transaction.
	MaxAttempts int
	// Fence, if set, adds comparisons every Admit and Release must also pass (the
	// manager's leadership).
	Fence func(...clientv3.Cmp) []clientv3.Cmp
}

func (l *Ledger) fenced(cmps []clientv3.Cmp) []clientv3.Cmp {
	if l.Fence == nil {
		return cmps
	}
	return l.Fence(cmps...)
}

// NewLedger uses keys under prefix (e.g. "/von/v1").
func NewLedger(cli *clientv3.Client, prefix string) *Ledger {
	return &Ledger{cli: cli, prefix: prefix, Quarantine: 10 * time.Minute, MaxAttempts: 200}
}

func (l *Ledger) linkKey(c Charge) string {
	return fmt.Sprintf("%s/links/%s/%s", l.prefix, url.PathEscape(c.Link), map[Direction]string{AtoB: "ab", BtoA: "ba"}[c.Dir])
}

func (l *Ledger) idKey(id uint32) string { return fmt.Sprintf("%s/ids/%08x", l.prefix, id) }

// idRecord is the value of an id key.
type idRecord struct {
	Owner string `json:"owner"`
	// Until is set while the id is in quarantine (unix nanoseconds).
	Until int64 `json:"until,omitempty"`
}

// Admission is one ON asking for capacity.
type Admission struct {
	Owner   string
	Rate    uint64
	Charges []Charge
	// Limit returns the reservable bit/s of a link (capacity × reservable).
	Limit func(link string) (uint64, bool)
	// Guard and Ops join the admission transaction: Guard must hold for it to apply
	// (e.g. the ON's key is absent, the topology unchanged) and Ops are written with it.
	// Ops gets the allocated id.
	Guard []clientv3.Cmp
	Ops   func(id uint32) ([]clientv3.Op, error)
}

// CapacityError says which link direction could not take the rate.
type CapacityError struct {
	Charge                Charge
	Limit, Reserved, Rate uint64
}

func (e *CapacityError) Error() string {
	return fmt.Sprintf("link %s (%s): %s reservable, %s already reserved, cannot add %s",
		e.Charge.Link, e.Charge.Dir, topology.FormatRate(e.Limit), topology.FormatRate(e.Reserved), topology.FormatRate(e.Rate))
}

func (e *CapacityError) Unwrap() error { return ErrInsufficientCapacity }

// ErrGuard is returned by Admit when an Admission.Guard comparison failed.
var ErrGuard = errors.New("admission guard failed")

// Admit allocates a fresh ON id and charges Rate on every link direction, atomically
// with the caller's Ops. It returns the id and the revision of the transaction.
func (l *Ledger) Admit(ctx context.Context, a Admission) (uint32, int64, error) {
	charges := dedupe(a.Charges)
	for attempt := 0; attempt < l.MaxAttempts; attempt++ {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return 0, 0, err
			}
		}
		gets := make([]clientv3.Op, len(charges))
		for i, c := range charges {
			gets[i] = clientv3.OpGet(l.linkKey(c))
		}
		resp, err := l.cli.Txn(ctx).Then(gets...).Commit()
		if err != nil {
			return 0, 0, fmt.Errorf("read link reservations: %w", err)
		}
		cmps := l.fenced(a.Guard)
		var puts []clientv3.Op
		for i, c := range charges {
			limit, ok := a.Limit(c.Link)
			if !ok {
				return 0, 0, fmt.Errorf("%w: unknown link %q", ErrInvalid, c.Link)
			}
			kvs := resp.Responses[i].GetResponseRange().Kvs
			var reserved uint64
			var rev int64
			if len(kvs) > 0 {
				if reserved, err = strconv.ParseUint(string(kvs[0].Value), 10, 64); err != nil {
					return 0, 0, fmt.Errorf("corrupt ledger key %s: %w", kvs[0].Key, err)
				}
				rev = kvs[0].ModRevision
			}
			if reserved+a.Rate > limit || reserved+a.Rate < reserved {
				return 0, 0, &CapacityError{Charge: c, Limit: limit, Reserved: reserved, Rate: a.Rate}
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(l.linkKey(c)), "=", rev))
			puts = append(puts, clientv3.OpPut(l.linkKey(c), strconv.FormatUint(reserved+a.Rate, 10)))
		}
		id := randomID()
		idVal, _ := json.Marshal(idRecord{Owner: a.Owner})
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(l.idKey(id)), "=", 0))
		puts = append(puts, clientv3.OpPut(l.idKey(id), string(idVal)))
		if a.Ops != nil {
			ops, err := a.Ops(id)
			if err != nil {
				return 0, 0, err
			}
			puts = append(puts, ops...)
		}
		tr, err := l.cli.Txn(ctx).If(cmps...).Then(puts...).Commit()
		if err != nil {
			return 0, 0, fmt.Errorf("admission transaction: %w", err)
		}
		if tr.Succeeded {
			return id, tr.Header.Revision, nil
		}
		if guard := l.fenced(a.Guard); len(guard) > 0 {
			ok, err := l.guardHolds(ctx, guard)
			if err != nil {
				return 0, 0, err
			}
			if !ok {
				return 0, 0, ErrGuard
			}
		}
	}
	return 0, 0, fmt.Errorf("admission of %s: %w", a.Owner, ErrContention)
}

func (l *Ledger) guardHolds(ctx context.Context, guard []clientv3.Cmp) (bool, error) {
	tr, err := l.cli.Txn(ctx).If(guard...).Commit()
	if err != nil {
		return false, fmt.Errorf("check admission guard: %w", err)
	}
	return tr.Succeeded, nil
}

// Release returns Rate on every charged link direction and quarantines id, atomically
// with the caller's ops (e.g. deleting or updating the ON record).
func (l *Ledger) Release(ctx context.Context, id uint32, rate uint64, charges []Charge, guard []clientv3.Cmp, ops []clientv3.Op) (int64, error) {
	charges = dedupe(charges)
	for attempt := 0; attempt < l.MaxAttempts; attempt++ {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return 0, err
			}
		}
		gets := make([]clientv3.Op, 0, len(charges)+1)
		for _, c := range charges {
			gets = append(gets, clientv3.OpGet(l.linkKey(c)))
		}
		gets = append(gets, clientv3.OpGet(l.idKey(id)))
		resp, err := l.cli.Txn(ctx).Then(gets...).Commit()
		if err != nil {
			return 0, fmt.Errorf("read link reservations: %w", err)
		}
		cmps := l.fenced(guard)
		puts := append([]clientv3.Op(nil), ops...)
		for i, c := range charges {
			kvs := resp.Responses[i].GetResponseRange().Kvs
			var reserved uint64
			var rev int64
			if len(kvs) > 0 {
				reserved, _ = strconv.ParseUint(string(kvs[0].Value), 10, 64)
				rev = kvs[0].ModRevision
			}
			left := uint64(0)
			if reserved > rate {
				left = reserved - rate
			}
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(l.linkKey(c)), "=", rev))
			if left == 0 {
				puts = append(puts, clientv3.OpDelete(l.linkKey(c)))
			} else {
				puts = append(puts, clientv3.OpPut(l.linkKey(c), strconv.FormatUint(left, 10)))
			}
		}
		var owner string
		if kvs := resp.Responses[len(charges)].GetResponseRange().Kvs; len(kvs) > 0 {
			var rec idRecord
			_ = json.Unmarshal(kvs[0].Value, &rec)
			owner = rec.Owner
		}
		q, _ := json.Marshal(idRecord{Owner: owner, Until: time.Now().Add(l.Quarantine).UnixNano()})
		puts = append(puts, clientv3.OpPut(l.idKey(id), string(q)))
		tr, err := l.cli.Txn(ctx).If(cmps...).Then(puts...).Commit()
		if err != nil {
			return 0, fmt.Errorf("release transaction: %w", err)
		}
		if tr.Succeeded {
			return tr.Header.Revision, nil
		}
		if g := l.fenced(guard); len(g) > 0 {
			ok, err := l.guardHolds(ctx, g)
			if err != nil {
				return 0, err
			}
			if !ok {
				return 0, ErrGuard
			}
		}
	}
	return 0, fmt.Errorf("release of ON %d: %w", id, ErrContention)
}

// Reserved returns the bit/s reserved on each link direction that has any.
func (l *Ledger) Reserved(ctx context.Context) (map[Charge]uint64, error) {
	resp, err := l.cli.Get(ctx, l.prefix+"/links/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("read link reservations: %w", err)
	}
	out := map[Charge]uint64{}
	for _, kv := range resp.Kvs {
		rest := string(kv.Key[len(l.prefix)+len("/links/"):])
		i := len(rest) - 3
		if i <= 0 || rest[i] != '/' {
			continue
		}
		name, err := url.PathUnescape(rest[:i])
		if err != nil {
			continue
		}
		d := AtoB
		if rest[i+1:] == "ba" {
			d = BtoA
		}
		v, _ := strconv.ParseUint(string(kv.Value), 10, 64)
		out[Charge{Link: name, Dir: d}] = v
	}
	return out, nil
}

// ReapQuarantine frees ids whose quarantine ended before now; it returns how many.
func (l *Ledger) ReapQuarantine(ctx context.Context, now time.Time) (int, error) {
	resp, err := l.cli.Get(ctx, l.prefix+"/ids/", clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("read ids: %w", err)
	}
	n := 0
	for _, kv := range resp.Kvs {
		var rec idRecord
		if json.Unmarshal(kv.Value, &rec) != nil || rec.Until == 0 || rec.Until > now.UnixNano() {
			continue
		}
		tr, err := l.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(string(kv.Key)), "=", kv.ModRevision)).
			Then(clientv3.OpDelete(string(kv.Key))).Commit()
		if err != nil {
			return n, fmt.Errorf("free id %s: %w", kv.Key, err)
		}
		if tr.Succeeded {
			n++
		}
	}
	return n, nil
}

// randomID draws an ON id in [1, 2³²−2]: 0 and all-ones stay reserved. Random ids make
// concurrent allocations rarely collide and make a stale id unlikely to match a new ON.
func randomID() uint32 { return 1 + rand.Uint32N(0xFFFFFFFE) }

func dedupe(cs []Charge) []Charge {
	seen := map[Charge]bool{}
	out := make([]Charge, 0, len(cs))
	for _, c := range cs {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Link != out[j].Link {
			return out[i].Link < out[j].Link
		}
		return out[i].Dir < out[j].Dir
	})
	return out
}

func backoff(ctx context.Context, attempt int) error {
	d := time.Duration(rand.Int64N(int64(min(attempt, 20)) * int64(time.Millisecond)))
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
