package bench

import (
	"context"
	"os/exec"
	"parley/internal/localcluster"
	"strings"
	"syscall"
	"testing"
	"time"
)

// standIn starts `sleep` as node i of a cluster of stand-ins: a process to
// stop, continue and end, without building a node.
func standIn(t *testing.T, n int) *LocalCluster {
	t.Helper()
	cl := &LocalCluster{}
	for i := range n {
		cmd := exec.Command("sleep", "60")
		cmd.SysProcAttr = localcluster.ProcAttr()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		cl.Nodes = append(cl.Nodes, &LocalNode{ID: "n" + string(rune('1'+i)), URL: "http://stand-in", cmd: cmd, done: done})
		t.Cleanup(func() { _ = cmd.Process.Kill() })
	}
	return cl
}

func state(t *testing.T, n *LocalNode) byte {
	t.Helper()
	st, err := localcluster.ProcState(n.cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestStopFaultAlwaysContinues: a stop fault freezes the process (state T)
// and continues it after resume_after, or at once when the run is
// interrupted; and LocalCluster.Stop, ContinueAll and Kill leave no
// stopped process behind.
func TestStopFaultAlwaysContinues(t *testing.T) {
	cl := standIn(t, 3)

	// Interrupted mid-stop: continued at once.
	r := &run{}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		// The kernel stops the process soon after the signal.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if st, err := localcluster.ProcState(cl.Nodes[0].cmd.Process.Pid); err == nil && st == 'T' && cl.Stopped(0) {
				return
			}
		}
		t.Errorf("node 0 never seen stopped (state T) during the stop fault")
	}()
	r.stop(ctx, cl, Fault{Action: "stop", Node: 0, ResumeAfter: Duration(time.Hour)})
	if cl.Stopped(0) || state(t, cl.Nodes[0]) == 'T' {
		t.Errorf("node 0 still stopped after an interrupted stop fault")
	}
	if len(r.events) != 2 || !strings.HasPrefix(r.events[0].What, "SIGSTOP n1 (http://stand-in) for 1h0m0s") || !strings.HasPrefix(r.events[1].What, "SIGCONT n1 after ") {
		t.Errorf("events %+v", r.events)
	}

	// Run to its end: SIGCONT after resume_after (a single node: no
	// cluster to wait for).
	one := standIn(t, 1)
	r = &run{}
	r.stop(context.Background(), one, Fault{Action: "stop", Node: 0, ResumeAfter: Duration(300 * time.Millisecond)})
	if one.Stopped(0) || state(t, one.Nodes[0]) == 'T' {
		t.Errorf("node still stopped after its stop fault")
	}
	if len(r.events) != 2 || r.events[1].What != "SIGCONT n1 after 300ms" {
		t.Errorf("events %+v", r.events)
	}
	one.Stop()

	// The safety nets: ContinueAll (Run's end), Kill, Stop.
	if err := cl.Suspend(2); err != nil {
		t.Fatal(err)
	}
	cl.ContinueAll()
	if cl.Stopped(2) || state(t, cl.Nodes[2]) == 'T' {
		t.Error("ContinueAll left node 2 stopped")
	}
	if err := cl.Suspend(0); err != nil {
		t.Fatal(err)
	}
	if err := cl.Kill(0); err != nil || cl.Stopped(0) || cl.Up(0) {
		t.Errorf("kill of a stopped node: %v, stopped %v, up %v", err, cl.Stopped(0), cl.Up(0))
	}
	if err := cl.Suspend(0); err != ErrNotRunning {
		t.Errorf("stop of a killed node: %v, want ErrNotRunning", err)
	}
	if err := cl.Suspend(1); err != nil {
		t.Fatal(err)
	}
	cl.Stop()
	// A stopped process holds SIGTERM pending: only if Stop continued it
	// did SIGTERM end it (else SIGKILL, 10 s later).
	for _, i := range []int{1, 2} {
		ws, _ := cl.Nodes[i].cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
			t.Errorf("node %d ended by %v, want SIGTERM", i, cl.Nodes[i].cmd.ProcessState)
		}
	}
}
