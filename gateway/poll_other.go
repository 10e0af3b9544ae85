//go:build !linux

package gateway

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// Without epoll, every WebSocket connection is read by a goroutine of its
// own (wsConn.Read), and a burst is written joined (WriteFrames);
// PollableTLS leaves its listener as it is.

const canPoll = false

var errNoPoller = errors.New("no poller on this platform")

type poller struct{}

type pollable interface{ readable(buf []byte) bool }

type pollers struct{}

func (*pollers) pick() (*poller, error) { return nil, errNoPoller }

func (*pollers) close() {}

func (p *poller) add(syscall.RawConn, pollable) (uint64, error) { return 0, errNoPoller }

func (p *poller) arm(syscall.RawConn, uint64) error { return errNoPoller }

func (p *poller) remove(uint64) {}

func readNonblock(syscall.RawConn, []byte) (int, error) { return 0, errNoPoller }

func (b *wsWriteBuf) writevAll(syscall.RawConn, net.Conn, time.Duration) error {
	return errNoPoller
}

func (b *wsWriteBuf) writevOnce(syscall.RawConn) error { return errNoPoller }

// iovec is unused where there is no poller.
type iovec struct{}
