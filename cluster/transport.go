package cluster

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// StreamLayer carries Raft's traffic between nodes: Accept returns
// connections other nodes opened, Dial opens one to another node, Addr is
// the address the others dial. Nodes hand in their nodelink (mutual TLS
// under the cluster's CA), so only members of the cluster get through.
type StreamLayer interface {
	net.Listener
	Dial(address string, timeout time.Duration) (net.Conn, error)
}

// tcpStream is the stream layer of raft.NewTCPTransport, over any listener
// and dialler, plus one thing it lacks: Close also closes the connections
// it accepted. raft's
// NetworkTransport runs a goroutine per accepted connection, blocked reading
// from the peer, and its Close only closes the listener, so without this
// those goroutines outlive the Cluster until the peer writes again, or for
// ever if the peer is gone too. (Outgoing pooled connections are closed by
// NetworkTransport.CloseStreams.)
type tcpStream struct {
	ln        net.Listener
	advertise net.Addr
	dial      func(address string, timeout time.Duration) (net.Conn, error)

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newTCPStream(bind string, advertise net.Addr) (*tcpStream, error) {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, err
	}
	s := &tcpStream{ln: ln, advertise: advertise, conns: make(map[net.Conn]struct{}),
		dial: func(address string, timeout time.Duration) (net.Conn, error) {
			return net.DialTimeout("tcp", address, timeout)
		}}
	addr, ok := s.Addr().(*net.TCPAddr)
	if !ok || addr.IP == nil || addr.IP.IsUnspecified() {
		ln.Close()
		return nil, invalidf("raft address %s cannot be dialled by peers: set AdvertiseAddr", s.Addr())
	}
	return s, nil
}

func (s *tcpStream) Accept() (net.Conn, error) {
	c, err := s.ln.Accept()
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		c.Close()
		return nil, net.ErrClosed
	}
	s.conns[c] = struct{}{}
	return &trackedConn{Conn: c, s: s}, nil
}

func (s *tcpStream) Close() error {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = nil
	s.mu.Unlock()
	err := s.ln.Close()
	for c := range conns {
		c.Close()
	}
	return err
}

func (s *tcpStream) Addr() net.Addr {
	if s.advertise != nil {
		return s.advertise
	}
	return s.ln.Addr()
}

func (s *tcpStream) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.dial(string(address), timeout)
}

func (s *tcpStream) forget(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

type trackedConn struct {
	net.Conn
	s    *tcpStream
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.s.forget(c.Conn) })
	return c.Conn.Close()
}

// newTransport is raft's NetworkTransport over tcpStream: up to 3 pooled
// connections per peer, 10s I/O timeout (an InstallSnapshot of a large
// state must fit). With a stream layer handed in, Raft runs over it; else
// over plain TCP on bind.
func newTransport(sl StreamLayer, bind, advertise string, logger *hclogAdapter) (*raft.NetworkTransport, error) {
	if sl != nil {
		stream := &tcpStream{ln: sl, dial: sl.Dial, conns: make(map[net.Conn]struct{})}
		return newNetworkTransport(stream, logger), nil
	}
	var adv net.Addr
	if advertise != "" {
		a, err := net.ResolveTCPAddr("tcp", advertise)
		if err != nil {
			return nil, fmt.Errorf("advertise address: %w", errors.Join(ErrInvalid, err))
		}
		adv = a
	}
	stream, err := newTCPStream(bind, adv)
	if err != nil {
		return nil, fmt.Errorf("raft transport on %s: %w", bind, err)
	}
	return newNetworkTransport(stream, logger), nil
}

func newNetworkTransport(stream *tcpStream, logger *hclogAdapter) *raft.NetworkTransport {
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  logger.Named("transport"),
	})
}
