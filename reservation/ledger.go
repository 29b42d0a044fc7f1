package reservation

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"strconv"
	"sync/atomic"
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
	// OnConflict, if set, is told of every guarded transaction that lost to
	// a concurrent one (and is retried), by operation.
	OnConflict func(what string)
	conflicts  atomic.Uint64
	locks      chargeLocks
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
	// Amounts, if set, is the bit/s charged on each link direction (copies × rate
	// where several copies of one message cross it); a charge absent from it is
	// charged Rate.
	Amounts map[Charge]uint64
	// Limit returns the reservable bit/s of a link (capacity × reservable).
	Limit func(link string) (uint64, bool)
	// Guard and Ops join the admission transaction: Guard must hold for it to apply
	// (e.g. the ON's key is absent, the topology unchanged) and Ops are written with it.
	// Ops gets the allocated id.
	Guard []clientv3.Cmp
	Ops   func(id uint32) ([]clientv3.Op, error)
	// Claim, if set, is called on every attempt before Ops: what else the
	// transaction must find (a free overlay block) and write to take it.
	// Losing a race for it is a conflict: the attempt is retried.
	Claim func() ([]clientv3.Cmp, []clientv3.Op, error)
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

func (a *Admission) amount(c Charge) uint64 {
	if v, ok := a.Amounts[c]; ok {
		return v
	}
	return a.Rate
}

// Admit allocates a fresh ON id and charges every link direction, atomically
// with the caller's Ops. It returns the id and the revision of the transaction.
func (l *Ledger) Admit(ctx context.Context, a Admission) (uint32, int64, error) {
	var id uint32
	rev, err := l.change(ctx, "admission", "admission of "+a.Owner, dedupe(a.Charges), nil, a.Guard,
		func(charges []Charge, links []linkState, _ *clientv3.TxnResponse) ([]clientv3.Cmp, []clientv3.Op, error) {
			cmps := l.fenced(a.Guard)
			var puts []clientv3.Op
			for i, c := range charges {
				limit, ok := a.Limit(c.Link)
				if !ok {
					return nil, nil, fmt.Errorf("%w: unknown link %q", ErrInvalid, c.Link)
				}
				reserved, amt := links[i].reserved, a.amount(c)
				if reserved+amt > limit || reserved+amt < reserved {
					return nil, nil, &CapacityError{Charge: c, Limit: limit, Reserved: reserved, Rate: amt}
				}
				cmp, put := l.setLink(c, links[i], reserved+amt)
				cmps, puts = append(cmps, cmp), append(puts, put)
			}
			id = randomID()
			idVal, _ := json.Marshal(idRecord{Owner: a.Owner})
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(l.idKey(id)), "=", 0))
			puts = append(puts, clientv3.OpPut(l.idKey(id), string(idVal)))
			if a.Claim != nil {
				c, p, err := a.Claim()
				if err != nil {
					return nil, nil, err
				}
				cmps, puts = append(cmps, c...), append(puts, p...)
			}
			if a.Ops != nil {
				ops, err := a.Ops(id)
				if err != nil {
					return nil, nil, err
				}
				puts = append(puts, ops...)
			}
			return cmps, puts, nil
		})
	if err != nil {
		return 0, 0, err
	}
	return id, rev, nil
}

// change is the one way the ledger changes: under the in-process locks of
// charges, read them (and the extra keys, whose responses follow), let build
// make the guarded transaction from what was read, and commit it; when a link
// changed in between, back off and read again, up to MaxAttempts (then
// ErrContention, as "desc: ..."). what names the change in conflicts counted.
func (l *Ledger) change(ctx context.Context, what, desc string, charges []Charge, extra []string, guard []clientv3.Cmp,
	build func(charges []Charge, links []linkState, resp *clientv3.TxnResponse) ([]clientv3.Cmp, []clientv3.Op, error)) (int64, error) {
	unlock, err := l.locks.lock(ctx, charges)
	if err != nil {
		return 0, err
	}
	defer unlock()
	for attempt := 0; attempt < l.MaxAttempts; attempt++ {
		if attempt > 0 {
			if err := backoff(ctx, attempt); err != nil {
				return 0, err
			}
		}
		links, resp, err := l.readLinks(ctx, charges, extra...)
		if err != nil {
			return 0, err
		}
		cmps, puts, err := build(charges, links, resp)
		if err != nil {
			return 0, err
		}
		if rev, done, err := l.commit(ctx, what, cmps, puts, guard); done || err != nil {
			return rev, err
		}
	}
	return 0, fmt.Errorf("%s: %w", desc, ErrContention)
}

// linkState is what one link direction holds, and the mod revision read.
type linkState struct {
	reserved uint64
	rev      int64
}

// readLinks reads the charges' link directions (and extra keys, whose
// responses follow) in one transaction.
func (l *Ledger) readLinks(ctx context.Context, charges []Charge, extra ...string) ([]linkState, *clientv3.TxnResponse, error) {
	gets := make([]clientv3.Op, 0, len(charges)+len(extra))
	for _, c := range charges {
		gets = append(gets, clientv3.OpGet(l.linkKey(c)))
	}
	for _, k := range extra {
		gets = append(gets, clientv3.OpGet(k))
	}
	resp, err := l.cli.Txn(ctx).Then(gets...).Commit()
	if err != nil {
		return nil, nil, fmt.Errorf("read link reservations: %w", err)
	}
	out := make([]linkState, len(charges))
	for i := range charges {
		if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
			v, err := strconv.ParseUint(string(kvs[0].Value), 10, 64)
			if err != nil {
				return nil, nil, fmt.Errorf("corrupt ledger key %s: %w", kvs[0].Key, err)
			}
			out[i] = linkState{v, kvs[0].ModRevision}
		}
	}
	return out, resp, nil
}

// setLink is the guard and the write that make c hold v (deleted at 0), if
// it still holds what was read.
func (l *Ledger) setLink(c Charge, read linkState, v uint64) (clientv3.Cmp, clientv3.Op) {
	cmp := clientv3.Compare(clientv3.ModRevision(l.linkKey(c)), "=", read.rev)
	if v == 0 {
		return cmp, clientv3.OpDelete(l.linkKey(c))
	}
	return cmp, clientv3.OpPut(l.linkKey(c), strconv.FormatUint(v, 10))
}

// commit runs one guarded ledger transaction. done: it applied (rev is its
// revision). Not done and no error: a link changed under it, read again. The
// caller's guard failing is ErrGuard.
func (l *Ledger) commit(ctx context.Context, what string, cmps []clientv3.Cmp, puts []clientv3.Op, guard []clientv3.Cmp) (rev int64, done bool, err error) {
	tr, err := l.cli.Txn(ctx).If(cmps...).Then(puts...).Commit()
	if err != nil {
		return 0, false, fmt.Errorf("%s transaction: %w", what, err)
	}
	if tr.Succeeded {
		return tr.Header.Revision, true, nil
	}
	if g := l.fenced(guard); len(g) > 0 {
		ok, err := l.guardHolds(ctx, g)
		if err != nil {
			return 0, false, err
		}
		if !ok {
			return 0, false, ErrGuard
		}
	}
	l.conflicts.Add(1)
	if l.OnConflict != nil {
		l.OnConflict(what)
	}
	return 0, false, nil
}

// Conflicts is how many guarded transactions lost to a concurrent one.
func (l *Ledger) Conflicts() uint64 { return l.conflicts.Load() }

func (l *Ledger) guardHolds(ctx context.Context, guard []clientv3.Cmp) (bool, error) {
	tr, err := l.cli.Txn(ctx).If(guard...).Commit()
	if err != nil {
		return false, fmt.Errorf("check admission guard: %w", err)
	}
	return tr.Succeeded, nil
}

// Release returns what was charged on every link direction (amounts, as admitted) and
// quarantines id, atomically with the caller's ops (e.g. deleting or updating the ON
// record).
func (l *Ledger) Release(ctx context.Context, id uint32, amounts map[Charge]uint64, guard []clientv3.Cmp, ops []clientv3.Op) (int64, error) {
	charges := make([]Charge, 0, len(amounts))
	for c := range amounts {
		charges = append(charges, c)
	}
	return l.change(ctx, "release", fmt.Sprintf("release of ON %d", id), dedupe(charges), []string{l.idKey(id)}, guard,
		func(charges []Charge, links []linkState, resp *clientv3.TxnResponse) ([]clientv3.Cmp, []clientv3.Op, error) {
			cmps := l.fenced(guard)
			puts := append([]clientv3.Op(nil), ops...)
			for i, c := range charges {
				cmp, put := l.setLink(c, links[i], links[i].reserved-min(links[i].reserved, amounts[c]))
				cmps, puts = append(cmps, cmp), append(puts, put)
			}
			var owner string
			if kvs := resp.Responses[len(charges)].GetResponseRange().Kvs; len(kvs) > 0 {
				var rec idRecord
				_ = json.Unmarshal(kvs[0].Value, &rec)
				owner = rec.Owner
			}
			q, _ := json.Marshal(idRecord{Owner: owner, Until: time.Now().Add(l.Quarantine).UnixNano()})
			return cmps, append(puts, clientv3.OpPut(l.idKey(id), string(q))), nil
		})
}

// Rebalance moves an ON's charges from old to new amounts (re-routing it),
// atomically with the caller's ops: every link direction changes by new − old,
// and one that grows must stay within its limit. It returns the revision.
func (l *Ledger) Rebalance(ctx context.Context, old, new map[Charge]uint64, limit func(link string) (uint64, bool), guard []clientv3.Cmp, ops []clientv3.Op) (int64, error) {
	var charges []Charge
	for c := range old {
		charges = append(charges, c)
	}
	for c := range new {
		charges = append(charges, c)
	}
	return l.change(ctx, "rebalance", "rebalance", dedupe(charges), nil, guard,
		func(charges []Charge, links []linkState, _ *clientv3.TxnResponse) ([]clientv3.Cmp, []clientv3.Op, error) {
			cmps := l.fenced(guard)
			puts := append([]clientv3.Op(nil), ops...)
			for i, c := range charges {
				reserved := links[i].reserved
				next := reserved - min(reserved, old[c])
				if new[c] > old[c] {
					lim, ok := limit(c.Link)
					if !ok {
						return nil, nil, fmt.Errorf("%w: unknown link %q", ErrInvalid, c.Link)
					}
					if next+new[c] > lim {
						return nil, nil, &CapacityError{Charge: c, Limit: lim, Reserved: next, Rate: new[c]}
					}
				}
				cmp, put := l.setLink(c, links[i], next+new[c])
				cmps, puts = append(cmps, cmp), append(puts, put)
			}
			return cmps, puts, nil
		})
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
