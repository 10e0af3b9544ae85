// Package commitgate holds a store's writer in one commit, for tests that
// need changes decided and published but not yet durable: a Gate is the
// store's Observer (store.Config.Observer), and once armed by Hold the
// writer waits in the Observer of its next commit until Open. Whatever is
// queued after that commit is not written meanwhile.
package commitgate

import (
	"sync"
	"testing"
	"time"
)

// Gate is a store.Observer that can hold the writer.
type Gate struct {
	mu      sync.Mutex
	armed   bool
	held    chan struct{} // closed once a commit is held
	release chan struct{}
	once    sync.Once
}

// New returns a gate that holds nothing until Hold.
func New() *Gate {
	return &Gate{held: make(chan struct{}), release: make(chan struct{})}
}

// ObserveCommit is the store's call after each commit: the first one
// after Hold armed the gate waits until Open.
func (g *Gate) ObserveCommit(time.Duration, int, error) {
	g.mu.Lock()
	armed := g.armed
	g.armed = false
	g.mu.Unlock()
	if armed {
		close(g.held)
		<-g.release
	}
}

// Hold arms the gate, makes a commit with commit (on a goroutine of its
// own: it returns once the gate opens) and returns once the writer waits
// in it. The gate opens at t's cleanup at the latest, before a store
// opened earlier in the test is closed. A gate holds once.
func (g *Gate) Hold(t testing.TB, commit func()) {
	t.Helper()
	g.mu.Lock()
	g.armed = true
	g.mu.Unlock()
	t.Cleanup(g.Open)
	go commit()
	<-g.held
}

// Open lets the held commit go (at most once).
func (g *Gate) Open() { g.once.Do(func() { close(g.release) }) }
