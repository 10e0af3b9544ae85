package localcluster

import (
	"errors"
	"syscall"
	"testing"
)

// standIns starts n `sleep` processes as the nodes of a cluster: processes
// to stop, continue and end, without building a node.
func standIns(t *testing.T, n int) *Cluster {
	t.Helper()
	c := &Cluster{}
	for i := range n {
		nd, err := StandIn("n"+string(rune('1'+i)), "sleep", "60")
		if err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, nd)
		t.Cleanup(func() { _ = nd.Kill() })
	}
	return c
}

func state(t *testing.T, n *Node) byte {
	t.Helper()
	st, err := ProcState(n.PID())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestNoNodeIsLeftStopped: Suspend stops the process (state T) by the time
// it returns; ContinueAll, Kill and Stop leave no stopped process behind,
// and Stop ends a stopped node by SIGTERM (continued first), not by the
// SIGKILL that follows StopTimeout later.
func TestNoNodeIsLeftStopped(t *testing.T) {
	c := standIns(t, 3)
	if err := c.Suspend(2); err != nil {
		t.Fatal(err)
	}
	if !c.Stopped(2) || state(t, c.Nodes[2]) != 'T' {
		t.Fatalf("node 2 after Suspend: stopped %v, state %c", c.Stopped(2), state(t, c.Nodes[2]))
	}
	c.ContinueAll()
	if c.Stopped(2) || state(t, c.Nodes[2]) == 'T' {
		t.Error("ContinueAll left node 2 stopped")
	}
	if err := c.Suspend(0); err != nil {
		t.Fatal(err)
	}
	if err := c.Kill(0); err != nil || c.Stopped(0) || c.Up(0) {
		t.Errorf("kill of a stopped node: %v, stopped %v, up %v", err, c.Stopped(0), c.Up(0))
	}
	if err := c.Suspend(0); !errors.Is(err, ErrNotRunning) {
		t.Errorf("stop of a killed node: %v, want ErrNotRunning", err)
	}
	if err := c.Kill(0); !errors.Is(err, ErrNotRunning) {
		t.Errorf("kill of a killed node: %v, want ErrNotRunning", err)
	}
	if err := c.Suspend(1); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	for _, i := range []int{1, 2} {
		ps := c.Nodes[i].ProcessState()
		ws, _ := ps.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
			t.Errorf("node %d ended by %v, want SIGTERM", i, ps)
		}
	}
}
