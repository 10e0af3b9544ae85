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
// have been applied (Apply reports ErrUncertain), unless it wraps
// ErrNotLeader: then the command was certainly not sent (no route to the
// leader, connection refused) and Apply retries it like a lost leader.
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

// HandleForward applies a command forwarded by another node's Forwarder and
// returns the reply to send back. The command is applied here only: a node
// that is not (or no longer) the leader answers ErrNotLeader rather than
// forwarding again, so a command makes at most one hop and the origin
// retries with the leader it learns next. Errors of the command travel in
// the reply; the error result is for a request that could not be answered
// at all, which does not happen today.
func (c *Cluster) HandleForward(ctx context.Context, cmd []byte) ([]byte, error) {
	if _, err := DecodeCommand(cmd); err != nil {
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
