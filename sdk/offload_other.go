//go:build !linux

package sdk

import "net"

const (
	maxSegments = 1
	maxTrain    = 0
	oobLen      = 0
)

func enableOffload(*net.UDPConn) (gso, gro bool) { return false, false }

func gsoCmsg(int) []byte { return nil }

func groSize([]byte) int { return 0 }
