package node

import (
	"errors"
	"net"
)

// closers is the node's start-up chain (etcd's style): each step of New
// that opens something adds what closes it, and they close in the reverse
// order: if a step fails, New closes what the steps before it opened; once
// Run ends, it closes them all. The order of opening, hence of closing in
// reverse: store, TCP listener, control plane, gossip, embedder, HTTP/3
// socket.
type closers []namedCloser

type namedCloser struct {
	what  string
	close func() error
}

// add appends what closes the step just taken.
func (c *closers) add(what string, close func() error) {
	*c = append(*c, namedCloser{what, close})
}

// close closes every step in reverse order, each once, and returns their
// errors (a listener a server closed already is not one).
func (c *closers) close() error {
	var errs []error
	for i := len(*c) - 1; i >= 0; i-- {
		s := (*c)[i]
		if err := s.close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, errors.Join(errors.New("closing "+s.what), err))
		}
	}
	*c = nil
	return errors.Join(errs...)
}
