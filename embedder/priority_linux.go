package embedder

import (
	"runtime"
	"syscall"
)

// lowerThreadPriority locks the calling goroutine to its OS thread and gives
// that thread nice 10. On Linux, setpriority with a thread ID sets that
// thread only. The thread is never unlocked, so Go ends it with the
// goroutine instead of reusing it, niced, for other goroutines. With one
// intra-op thread ONNX Runtime runs the model on the calling thread, so the
// model runs niced too.
func lowerThreadPriority() error {
	runtime.LockOSThread()
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), 10)
}
