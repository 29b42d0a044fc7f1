// Package testbed builds a topology file into real Linux network namespaces for
// end-to-end tests and the demo: one namespace per node, one "wire" namespace per link
// (two veth pairs joined by a bridge, with TBF at the link's capacity on each bridge
// port, so the bottleneck exists whether or not an agent shapes anything), /30 link
// addressing from 10.77.128.0/17, static shortest-path base routes, link cut and
// restore, commands and in-process code inside a node's namespace, paced UDP traffic
// and counting sinks, and teardown that also sweeps what crashed runs left behind.
//
// Everything lives in 10.77.0.0/16 inside namespaces; nothing leaves the machine.
package testbed
