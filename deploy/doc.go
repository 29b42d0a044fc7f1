// Package deploy holds what installs and runs VON on a host, and tests it; it has
// no Go API.
//
//   - von-manager.service, von-agent.service: hardened systemd units
//   - von-manager.env, von-agent.env: their EnvironmentFiles, every flag explained
//     (installed as /etc/von/*.env)
//   - von-manager.sysusers, von-agent.sysusers: their system users (sysusers.d)
//   - nfpm/*.yaml, scripts/: the .deb packages von-manager, von-agent and vonctl,
//     which `make package` builds with nfpm
//   - version.sh: the packages' version, from git
//   - grafana/von.json, grafana/alerts.yaml: a Grafana dashboard and Prometheus
//     alert rules over the manager's, the agents' and etcd's metrics
//     (docs/metrics.md)
//
// The tests check every metric and label the dashboard and the rules query
// against what the code registers, and docs/metrics.md against both. They run
// `systemd-analyze verify` and `systemd-analyze security` on the
// units (skipped without systemd-analyze) and, as root with dpkg, build the
// packages, install them, run each binary's --version and purge them again.
package deploy
