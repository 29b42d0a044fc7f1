// Package framework runs one scenario on two harnesses, as etcd's
// tests/framework does: InProcess runs the manager (managerd, its embedded etcd)
// and the agents as goroutines of the test process, talking gRPC in plaintext;
// Binaries runs the real von-manager, von-agent and vonctl binaries with mutual
// TLS (package e2e/cluster). Both drive the real kernel of a testbed
// (package e2e/testbed). A scenario is a func(t, Cluster) written once; Run
// runs it on each harness, so a behaviour is tested the same way whether the
// code is in the test's process (race detector, goleak, a debugger) or shipped
// as the binaries an operator installs.
package framework
