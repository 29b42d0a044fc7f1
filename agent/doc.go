// Package agent is the VON router agent: the participant of the manager's
// two-phase commit (AgentService), its crash-safe local journal, the lease
// watchdog that removes partitions nobody refreshes (X-Bone's failsafe) and the
// reconciler that keeps the kernel converged to the committed partitions
// through package partition.
//
// An Agent is built with New and driven by Run: Run serves AgentService,
// registers with the manager's AgentRegistryService (retrying with backoff and
// re-registering periodically as a liveness heartbeat), converges to the
// desired state the manager returns, and runs the watchdog until its context
// ends. Partitions stay installed when the agent stops: their lease, not the
// process, decides their life. See docs/agent.md.
package agent
