package cluster

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// holdForwarder stands between the followers and the leader like a leader
// that stalls: forwards to the address it is armed for do not answer until
// the sender gives up on them. In deliver mode the command reaches that
// leader and is applied (its answer is what is lost); otherwise it is kept,
// undelivered, for the test to deliver later.
type holdForwarder struct {
	mu      sync.Mutex
	next    Forwarder
	target  string
	deliver bool
	held    chan []byte         // commands held (or delivered, then held)
	replies chan forwardedReply // in deliver mode, what the leader answered
}

type forwardedReply struct {
	res Result
	err error
}

func (f *holdForwarder) setNext(next Forwarder) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.next = next
}

// arm holds the next forwards to addr.
func (f *holdForwarder) arm(addr string, deliver bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.target, f.deliver = addr, deliver
	f.held = make(chan []byte, 16)
	f.replies = make(chan forwardedReply, 16)
}

func (f *holdForwarder) Forward(ctx context.Context, leaderAddr string, cmd []byte) ([]byte, error) {
	f.mu.Lock()
	next, target, deliver, held, replies := f.next, f.target, f.deliver, f.held, f.replies
	f.mu.Unlock()
	if next == nil {
		return nil, fmt.Errorf("no forwarder yet: %w", ErrNotLeader)
	}
	if leaderAddr != target {
		return next.Forward(ctx, leaderAddr, cmd)
	}
	if deliver {
		// Applied on the stalled leader, on a context of its own: the
		// sender giving up does not stop it.
		b, err := next.Forward(context.Background(), leaderAddr, cmd)
		if err == nil {
			res, rerr := decodeReply(b)
			replies <- forwardedReply{res, rerr}
		}
	}
	held <- cmd
	<-ctx.Done()
	return nil, ctx.Err()
}

// newHoldCluster starts three nodes whose forwards go through a
// holdForwarder.
func newHoldCluster(t *testing.T) (*testCluster, *holdForwarder) {
	hf := &holdForwarder{}
	tc := newTestCluster(t, 3, func(c *Config) { c.Forwarder = hf })
	hf.setNext(tc.fwd)
	return tc, hf
}

// transferLeadership makes the leader hand over to another node and waits
// until every node knows the new one.
func transferLeadership(t *testing.T, tc *testCluster, old *Cluster) *Cluster {
	t.Helper()
	if err := old.raft.LeadershipTransfer().Error(); err != nil {
		t.Fatalf("leadership transfer: %v", err)
	}
	leader := tc.leader()
	if leader == old {
		t.Fatal("the old leader leads again")
	}
	return leader
}

// keysNamed counts workspace acme's keys named name on every node, once
// they have applied index.
func keysNamed(t *testing.T, tc *testCluster, index uint64, name string) map[string]int {
	t.Helper()
	tc.waitApplied(index)
	out := map[string]int{}
	for _, c := range tc.live() {
		keys, err := c.Keys("acme")
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if k.Name == name {
				out[c.ID()]++
			}
		}
	}
	return out
}

// A write forwarded to a leader that applied it and then stalled, its
// answer lost, is sent again to the next leader once it is elected, and
// answers what the stalled leader applied: the key exists once.
func TestForwardResentWhenLeaderReplaced(t *testing.T) {
	t.Parallel()
	tc, hf := newHoldCluster(t)
	leader := tc.leader()
	mustApply(t, leader, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "team", Created: t0})
	follower := tc.followers()[0]

	hf.arm(leader.Addr(), true)
	_, kh := NewAPIKey()
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	// Well within the test's deadline and well below ApplyTimeout: a
	// forward that waited for the stalled leader would run into it.
	ctx, cancel := context.WithTimeout(testContext(t), 8*time.Second)
	defer cancel()
	go func() {
		res, err := follower.Apply(ctx, CreateKey{Hash: kh, Workspace: "acme", Name: "resent", Created: t0})
		done <- outcome{res, err}
	}()
	var first forwardedReply
	select {
	case first = <-hf.replies:
	case o := <-done:
		t.Fatalf("Apply returned before the leader applied it: %+v %v", o.res, o.err)
	}
	if first.err != nil {
		t.Fatalf("the stalled leader's answer: %v", first.err)
	}
	next := transferLeadership(t, tc, leader)
	o := <-done
	if o.err != nil {
		t.Fatalf("write through %s after the leader moved from %s to %s: %v", follower.ID(), leader.ID(), next.ID(), o.err)
	}
	if o.res != first.res {
		t.Fatalf("answered %+v, the stalled leader applied it as %+v", o.res, first.res)
	}
	for id, n := range keysNamed(t, tc, o.res.Index, "resent") {
		if n != 1 {
			t.Errorf("%s holds the key %d times", id, n)
		}
	}
}

// A write whose forward the stalled leader never took in is sent to the
// next leader and applied there; the first copy, delivered late to the
// leader of the day, changes nothing and answers what the resend did.
func TestForwardResentThenLateCopy(t *testing.T) {
	t.Parallel()
	tc, hf := newHoldCluster(t)
	leader := tc.leader()
	mustApply(t, leader, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "team", Created: t0})
	follower := tc.followers()[0]

	hf.arm(leader.Addr(), false)
	_, kh := NewAPIKey()
	ctx, cancel := context.WithTimeout(testContext(t), 8*time.Second)
	defer cancel()
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := follower.Apply(ctx, CreateKey{Hash: kh, Workspace: "acme", Name: "late", Created: t0})
		done <- outcome{res, err}
	}()
	var late []byte
	select {
	case late = <-hf.held:
	case o := <-done:
		t.Fatalf("Apply returned before forwarding: %+v %v", o.res, o.err)
	}
	next := transferLeadership(t, tc, leader)
	o := <-done
	if o.err != nil {
		t.Fatalf("write through %s after the leader moved from %s to %s: %v", follower.ID(), leader.ID(), next.ID(), o.err)
	}
	reply, err := tc.leader().HandleForward(testContext(t), late)
	if err != nil {
		t.Fatal(err)
	}
	res, err := decodeReply(reply)
	if err != nil || res != o.res {
		t.Fatalf("late copy answered %+v %v, want the resend's %+v", res, err, o.res)
	}
	idx, err := tc.leader().ReadIndex(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	for id, n := range keysNamed(t, tc, idx, "late") {
		if n != 1 {
			t.Errorf("%s holds the key %d times", id, n)
		}
	}
}

// A write on a leader that loses its leadership before the write commits
// (its followers gone: it steps down when its lease runs out) is sent on to
// the next leader once there is one, instead of ending uncertain; the key
// exists once whichever node wins the election.
func TestLeaderLosingLeadMidWriteResends(t *testing.T) {
	t.Parallel()
	tc := newTestCluster(t, 3, nil)
	leader := tc.leader()
	mustApply(t, leader, CreateWorkspace{ID: "acme", Name: "Acme", Plan: "team", Created: t0})
	followers := tc.followers()
	for _, c := range followers {
		tc.stop(c.ID())
	}
	ctx, cancel := context.WithTimeout(testContext(t), 15*time.Second)
	defer cancel()
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	_, kh := NewAPIKey()
	go func() {
		res, err := leader.Apply(ctx, CreateKey{Hash: kh, Workspace: "acme", Name: "lost-lead", Created: t0})
		done <- outcome{res, err}
	}()
	for leader.IsLeader() {
		select {
		case o := <-done:
			t.Fatalf("Apply gave up as its node lost the lead: %+v %v", o.res, o.err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	for _, c := range followers {
		tc.start(c.ID(), false)
	}
	o := <-done
	if o.err != nil {
		t.Fatalf("write on a leader that lost the lead: %v", o.err)
	}
	for id, n := range keysNamed(t, tc, o.res.Index, "lost-lead") {
		if n != 1 {
			t.Errorf("%s holds the key %d times", id, n)
		}
	}
}
