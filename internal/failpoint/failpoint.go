// Package failpoint lets chaos tests crash a binary at a named step: built with
// the failpoints tag, Hit(name) kills the process (SIGKILL, as kill -9 would)
// when $VON_FAILPOINTS names that step; built without it (every production
// build), Hit does nothing and costs nothing.
//
//	VON_FAILPOINTS=after-decision          kill at the first hit
//	VON_FAILPOINTS=after-some-prepares@3   kill at the third hit
//
// The steps are listed in Names.
package failpoint

// The steps the manager honours, in the order a reservation meets them.
const (
	BeforePrepare     = "before-prepare"      // admitted (capacity, id, records written), nothing sent
	AfterSomePrepares = "after-some-prepares" // one router voted PREPARED, the others not yet asked or answered
	AfterDecision     = "after-decision"      // the commit decision is in etcd, no Commit sent
	AfterSomeCommits  = "after-some-commits"  // one router acked the Commit
	AfterReleaseStart = "after-release-start" // RELEASING recorded, no Release sent
)

// Names lists every step.
var Names = []string{BeforePrepare, AfterSomePrepares, AfterDecision, AfterSomeCommits, AfterReleaseStart}

// Env is the environment variable naming the step to crash at.
const Env = "VON_FAILPOINTS"
