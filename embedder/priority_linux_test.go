package embedder

import (
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
	p, err := syscall.Getpriority(syscall.PRIO_PROCESS, syscall.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if 20-p == 10 {
		t.Fatal("the whole process was niced, not one thread")
	}
}
