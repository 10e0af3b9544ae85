package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"parley/internal/localcluster"
)

// standIn starts `sleep` as each node of a cluster of stand-ins: processes
// to stop, continue and end, without building a node.
func standIn(t *testing.T, n int) *localcluster.Cluster {
	t.Helper()
	cl := &localcluster.Cluster{}
	for i := range n {
		nd, err := localcluster.StandIn("n"+string(rune('1'+i)), "sleep", "60")
		if err != nil {
			t.Fatal(err)
		}
		cl.Nodes = append(cl.Nodes, nd)
		t.Cleanup(func() { _ = nd.Kill() })
	}
	return cl
}

func state(t *testing.T, n *localcluster.Node) byte {
	t.Helper()
	st, err := localcluster.ProcState(n.PID())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestStopFaultAlwaysContinues: a stop fault freezes the process (state T)
// and continues it after resume_after, or at once when the run is
// interrupted. (That the cluster's Stop, ContinueAll and Kill leave no
// stopped process behind is internal/localcluster's test.)
func TestStopFaultAlwaysContinues(t *testing.T) {
	cl := standIn(t, 3)

	// Interrupted mid-stop: continued at once.
	r := &run{}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		defer cancel()
		// The kernel stops the process soon after the signal.
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if st, err := localcluster.ProcState(cl.Nodes[0].PID()); err == nil && st == 'T' && cl.Stopped(0) {
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
}
