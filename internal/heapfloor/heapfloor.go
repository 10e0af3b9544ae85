// Package heapfloor keeps the Go collector from starting a cycle before
// the heap has grown by at least a floor past its live data.
//
// With GOGC alone the runtime starts the next collection once the heap
// reaches live × (1 + GOGC/100). A node's live heap is small (its
// conversations are on disk, not in memory: tens of MiB), so at a high
// message rate it collected many times a second, and each cycle's fixed
// costs and the write barriers that are on while it marks took a large
// share of the node's CPU (docs/benchmarks.md, issue 16). A Keeper raises
// the process's GOGC while the live heap is small, so that the goal is at
// least live + Floor, and gives it back to the process's own GOGC as soon
// as that alone leaves Floor of headroom. The memory it costs is at most
// Floor over what GOGC alone would let the heap reach, and nothing once
// the live heap is past Floor × 100 / GOGC. GOMEMLIMIT still bounds the
// heap; GOGC=off turns the Keeper off.
//
// GOGC is the process's: cmd/parley starts one Keeper for the process, not
// one per node.
package heapfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"
)

// maxPercent bounds the GOGC a Keeper sets (a live heap of a few KiB).
const maxPercent = 100_000

// minLive is the least live heap Percent counts: the runtime's own
// minimum heap goal is 4 MiB × GOGC/100, so a smaller live heap (or none
// measured yet, 0) would give a first goal far past the floor.
const minLive = 4 << 20

// Percent is the GOGC that leaves at least floor bytes of headroom over a
// live heap of live bytes (at least minLive), and never less than base
// (the process's own GOGC).
func Percent(live, floor int64, base int) int {
	if floor <= 0 || base < 0 {
		return base
	}
	live = max(live, minLive)
	p := (floor*100 + live - 1) / live
	if p > maxPercent {
		p = maxPercent
	}
	return max(int(p), base)
}

// Keeper holds the floor until Close. Its goroutine is woken after each
// collection (a cleanup on an object only the Keeper allocated, made
// again each cycle) and, in case a wake-up is missed, once a second.
type Keeper struct {
	floor int64
	base  int
	kick  chan struct{}
	quit  chan struct{}
	done  chan struct{}
	once  sync.Once

	mu     sync.Mutex // guards closed, for the cleanup that re-arms
	closed bool
}

// sentinel is allocated to learn when a collection has run: 16 bytes with
// a pointer, so it is never batched with other tiny objects.
type sentinel struct {
	_ *byte
	_ [8]byte
}

// Start begins keeping floor bytes of headroom. floor ≤ 0, or GOGC=off,
// gives a Keeper that does nothing.
func Start(floor int64) *Keeper {
	k := &Keeper{floor: floor, base: gogc(), kick: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	if floor <= 0 || k.base < 0 {
		close(k.done)
		return k
	}
	k.adjust(0)
	k.arm()
	go k.run()
	return k
}

// Close stops the Keeper and gives the process its own GOGC back.
func (k *Keeper) Close() error {
	k.once.Do(func() {
		k.mu.Lock()
		k.closed = true
		k.mu.Unlock()
		close(k.quit)
		<-k.done
		if k.floor > 0 && k.base >= 0 {
			debug.SetGCPercent(k.base)
		}
	})
	return nil
}

// arm allocates a sentinel whose cleanup, run once a collection has found
// it unreachable, wakes the Keeper and arms the next.
func (k *Keeper) arm() {
	s := &sentinel{}
	runtime.AddCleanup(s, func(k *Keeper) {
		k.mu.Lock()
		closed := k.closed
		k.mu.Unlock()
		if closed {
			return
		}
		select {
		case k.kick <- struct{}{}:
		default:
		}
		k.arm()
	}, k)
}

func (k *Keeper) run() {
	defer close(k.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	set := 0
	for {
		select {
		case <-k.quit:
			return
		case <-k.kick:
		case <-t.C:
		}
		set = k.adjust(set)
	}
}

// adjust sets GOGC for the live heap now when it differs from set, the
// last value set, by more than a sixteenth; it returns the value in force.
func (k *Keeper) adjust(set int) int {
	p := Percent(liveHeap(), k.floor, k.base)
	if d := p - set; set != 0 && d < set/16 && -d < set/16 {
		return set
	}
	debug.SetGCPercent(p)
	return p
}

// liveHeap is the heap the last collection marked live (0 before one ran).
func liveHeap() int64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s[0].Value.Uint64())
}

// gogc is the process's GOGC now (-1: off), read by setting it and
// setting it back.
func gogc() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}
