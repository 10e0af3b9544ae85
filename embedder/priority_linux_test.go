package embedder

import (
	"runtime"
	"syscall"
	"testing"
)

// TestLowerThreadPriority: the calling thread gets nice 10 and the rest of
// the process keeps its priority.
func TestLowerThreadPriority(t *testing.T) {
	t.Parallel()
	type result struct {
		tid, prio int
		err       error
	}
	ch := make(chan result, 1)
	go func() {
		err := lowerThreadPriority()
		tid := syscall.Gettid()
		// The raw getpriority syscall returns 20 - nice.
		p, perr := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
		if err == nil {
			err = perr
		}
		ch <- result{tid, 20 - p, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.prio != 10 {
		t.Fatalf("worker thread nice = %d, want 10", r.prio)
	}
	// Another thread keeps its priority.
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid := syscall.Gettid()
		p, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid)
		ch <- result{tid, 20 - p, err}
	}()
	o := <-ch
	if o.err != nil {
		t.Fatal(o.err)
	}
	if o.tid == r.tid || o.prio == 10 {
		t.Fatalf("another thread (%d, worker %d) has nice %d: the niceness leaked", o.tid, r.tid, o.prio)
	}
}
