// Package reservation is the manager: it keeps the network model, reservations, ON ids
// and per-link bandwidth in etcd, admits ONs linearizably, drives the two-phase commit
// with the router agents, and releases reservations whose lease ran out.
package reservation
