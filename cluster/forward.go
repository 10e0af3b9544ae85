package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// Forwarder carries a command from a follower to the leader: it sends the
// encoded command to the node whose Raft address is leaderAddr, which passes
// it to its HandleForward, and returns that reply. The node implements it
// over its internal HTTP API; LocalForwarder does it in-process for tests.
// An error means the reply was not received, so the command may or may not
// have been applied, unless it wraps ErrNotLeader: then the command was
// certainly not sent (no route to the leader, connection refused). Either
// way Apply sends it again (the same Request: see there) until the context
// ends. Forward must return soon after ctx is cancelled: Apply cancels it
// when this node learns of another leader.
type Forwarder interface {
	Forward(ctx context.Context, leaderAddr string, cmd []byte) ([]byte, error)
}

// reply is HandleForward's answer. Errors travel as a code and a message so
// the origin can match them with errors.Is like local ones.
type reply struct {
	Result Result `json:"result"`
	Code   string `json:"code,omitempty"`
	Error  string `json:"error,omitempty"`
}

func encodeReply(res Result, err error) []byte {
	r := reply{Result: res}
	if err != nil {
		r.Code, r.Error = ErrorCode(err), err.Error()
	}
	b, merr := json.Marshal(r)
	if merr != nil {
		// A Result and two strings always encode; this cannot happen.
		b = fmt.Appendf(nil, `{"code":"internal","error":%q}`, merr.Error())
	}
	return b
}

func decodeReply(b []byte) (Result, error) {
	var r reply
	if err := json.Unmarshal(b, &r); err != nil {
		return Result{}, fmt.Errorf("%w: undecodable reply from leader: %v", ErrUncertain, err)
	}
	if r.Code != "" {
		return r.Result, errorFromCode(r.Code, r.Error)
	}
	return r.Result, nil
}

// forward sends data to the leader this node knows, through fwd, and
// decodes its reply. If this node learns of another leader (or of none)
// before the reply comes, because the one asked stalled, crashed or was
// deposed, it cancels the forward and returns an ErrUncertain at once,
// so that Apply sends the request to the next leader instead of waiting
// for this one. delivered says whether the command may have reached a
// leader's log.
func (c *Cluster) forward(ctx context.Context, fwd Forwarder, data []byte) (res Result, delivered bool, err error) {
	moved := c.leaderChanged()
	id, addr := c.Leader()
	if addr == "" || addr == c.Addr() {
		// No leader known, or raft still names this node, which just lost
		// the lead: wait for the next one.
		return Result{}, false, c.notLeader()
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type answer struct {
		b   []byte
		err error
	}
	done := make(chan answer, 1)
	go func() {
		b, err := fwd.Forward(fctx, addr, data)
		done <- answer{b, err}
	}()
	var a answer
	abandoned := func() error {
		for {
			select {
			case a = <-done:
				return nil
			case <-c.closing:
				return ErrClosed
			case <-moved:
				moved = c.leaderChanged()
				if _, now := c.Leader(); now != addr {
					return fmt.Errorf("leader %s at %s replaced before it answered", id, addr)
				}
			}
		}
	}()
	if abandoned != nil {
		// The goroutine returns once Forward sees fctx end. An answer that
		// came meanwhile is still the answer.
		cancel()
		a = <-done
	}
	switch {
	case a.err == nil:
		res, err = decodeReply(a.b)
		// not_leader: the leader refused it before its log.
		return res, !errors.Is(err, ErrNotLeader), err
	case errors.Is(a.err, ErrNotLeader):
		return Result{}, false, a.err // never sent
	case abandoned != nil:
		return Result{}, true, fmt.Errorf("%w: forward to leader %s at %s: %w", ErrUncertain, id, addr, abandoned)
	}
	return Result{}, true, fmt.Errorf("%w: forward to leader %s at %s: %w", ErrUncertain, id, addr, a.err)
}

// HandleForward applies a command forwarded by another node's Forwarder and
// returns the reply to send back. The command is applied here only: a node
// that is not (or no longer) the leader answers ErrNotLeader rather than
// forwarding again, and one that loses its leadership while applying
// answers ErrUncertain, so a command makes at most one hop and the origin
// sends it again to the leader it learns next (a Request, applied once
// however many copies arrive; a bare command from an older node is applied
// as it comes). Errors of the command travel in the reply; the error result
// is for a request that could not be answered at all, which does not
// happen today.
func (c *Cluster) HandleForward(ctx context.Context, cmd []byte) ([]byte, error) {
	decoded, err := DecodeCommand(cmd)
	if err != nil {
		return encodeReply(Result{}, err), nil
	}
	// The origin checked too, with its own view of the members' versions:
	// the leader's is the one that counts.
	if err := c.checkVersion(decoded); err != nil {
		return encodeReply(Result{}, err), nil
	}
	res, err := c.apply(ctx, cmd, nil)
	if errors.Is(err, ErrClosed) {
		// Closed means not the leader any more; nothing was applied.
		err = &NotLeaderError{}
	}
	return encodeReply(res, err), nil
}

// LocalForwarder forwards in-process, to Clusters registered by their Raft
// address: tests run real Raft over TCP without an HTTP layer.
type LocalForwarder struct {
	mu    sync.RWMutex
	nodes map[string]*Cluster
}

// NewLocalForwarder returns an empty LocalForwarder.
func NewLocalForwarder() *LocalForwarder {
	return &LocalForwarder{nodes: make(map[string]*Cluster)}
}

// Add makes c reachable at its Raft address.
func (f *LocalForwarder) Add(c *Cluster) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nodes[c.Addr()] = c
}

// Remove makes c unreachable, as if its process had died.
func (f *LocalForwarder) Remove(c *Cluster) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nodes[c.Addr()] == c {
		delete(f.nodes, c.Addr())
	}
}

// Forward implements Forwarder.
func (f *LocalForwarder) Forward(ctx context.Context, leaderAddr string, cmd []byte) ([]byte, error) {
	f.mu.RLock()
	c := f.nodes[leaderAddr]
	f.mu.RUnlock()
	if c == nil {
		return nil, fmt.Errorf("no node at %s", leaderAddr)
	}
	return c.HandleForward(ctx, cmd)
}
