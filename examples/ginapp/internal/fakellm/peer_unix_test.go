//go:build unix

package fakellm

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// TestPeerClosed: a socket with nothing to read, or with unread data, is
// open; once its client has closed, the kernel says so before the server has
// read anything, and the peek has consumed none of the data.
func TestPeerClosed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	if peerClosed(server) {
		t.Fatal("an idle open socket reads as closed")
	}
	if _, err := client.Write([]byte("GET")); err != nil {
		t.Fatal(err)
	}
	// Unread data: the peek sees it and leaves it (the socket is open).
	_ = server.SetReadDeadline(time.Now().Add(10 * time.Second))
	for arrive := time.Now().Add(10 * time.Second); !peerOpenWithData(t, server); {
		if time.Now().After(arrive) {
			t.Fatal("the client's GET did not arrive within 10s")
		}
		time.Sleep(time.Millisecond) // polling the kernel's socket state
	}
	b := make([]byte, 8)
	if n, err := server.Read(b); err != nil || string(b[:n]) != "GET" {
		t.Fatalf("after the peeks the server read %q, %v; want the client's GET", b[:n], err)
	}
	_ = client.Close()
	// On loopback the FIN arrives at once, but the kernel may take a
	// moment: wait for the cause, bounded generously.
	deadline := time.Now().Add(10 * time.Second)
	for !peerClosed(server) {
		if time.Now().After(deadline) {
			t.Fatal("the client closed 10s ago and the socket still reads as open")
		}
		time.Sleep(time.Millisecond) // polling the kernel's socket state
	}
}

// peerOpenWithData reports whether c has data to read, failing t if c reads
// as closed meanwhile.
func peerOpenWithData(t *testing.T, c net.Conn) bool {
	t.Helper()
	if peerClosed(c) {
		t.Fatal("a socket with unread data and an open client reads as closed")
	}
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	has := false
	_ = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, _ := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		has = n > 0
		return true
	})
	return has
}
