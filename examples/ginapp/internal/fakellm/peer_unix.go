//go:build unix

package fakellm

import (
	"net"
	"syscall"
)

// peerClosed reports whether c's peer has closed its side: a non-blocking
// peek that reads end of stream (or an error other than "nothing yet").
// It consumes nothing, so the server's own reads are unaffected.
func peerClosed(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = err == nil && n == 0 || err != nil && err != syscall.EAGAIN && err != syscall.EWOULDBLOCK && err != syscall.EINTR
		return true // never wait for the socket to become readable
	})
	return closed || err != nil
}
