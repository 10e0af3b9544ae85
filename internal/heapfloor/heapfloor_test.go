package heapfloor

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"parley/internal/eventually"
)

func TestPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, floor int64
		base, want  int
	}{
		{16 * mib, 64 * mib, 100, 400},   // small live heap: goal live + floor
		{10 * mib, 64 * mib, 100, 640},   //
		{15 * mib, 64 * mib, 100, 427},   // rounded up: never less than the floor
		{64 * mib, 64 * mib, 100, 100},   // GOGC alone gives the floor
		{200 * mib, 64 * mib, 100, 100},  // and more: the process's own
		{200 * mib, 64 * mib, 50, 50},    // a GOGC set lower is kept once it gives the floor
		{100 * mib, 64 * mib, 50, 64},    // and raised where it does not
		{0, 64 * mib, 100, 1600},         // not measured yet: the runtime's 4 MiB
		{2 * mib, 64 * mib, 100, 1600},   // less: as 4 MiB
		{1, 1 << 40, 100, maxPercent},    // bounded
		{16 * mib, 0, 100, 100},          // no floor
		{16 * mib, 64 * mib, -1, -1},     // GOGC=off stays off
		{16 * mib, 64 * mib, 1000, 1000}, // a higher GOGC is kept
	} {
		if got := Percent(c.live, c.floor, c.base); got != c.want {
			t.Errorf("Percent(%d MiB, %d MiB, %d) = %d, want %d", c.live/mib, c.floor/mib, c.base, got, c.want)
		}
	}
}

var keep [][]byte

// churn allocates n MiB of garbage with 4 MiB kept live, and returns how
// many collections ran meanwhile.
func churn(n int) uint32 {
	var before, after runtime.MemStats
	keep = make([][]byte, 64)
	for i := range keep {
		keep[i] = make([]byte, 64<<10)
	}
	runtime.ReadMemStats(&before)
	for i := 0; i < n*16; i++ {
		b := make([]byte, 64<<10)
		keep[i%len(keep)] = b
	}
	runtime.ReadMemStats(&after)
	return after.NumGC - before.NumGC
}

// TestFloorCutsCollections: with a 64 MiB floor over a 4 MiB live heap the
// runtime collects several times less often than with GOGC alone, and
// Close gives the process its GOGC back.
func TestFloorCutsCollections(t *testing.T) {
	base := debug.SetGCPercent(100)
	defer debug.SetGCPercent(base)
	runtime.GC()
	without := churn(512)

	k := Start(64 << 20)
	runtime.GC() // the Keeper sees a measured live heap
	runtime.GC()
	with := churn(512)
	if err := k.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("collections for 512 MiB allocated: %d with GOGC=100 alone, %d with a 64 MiB floor", without, with)
	if with*4 > without {
		t.Errorf("%d collections with the floor, %d without: want at most a quarter", with, without)
	}
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("GOGC after Close = %d, want the process's 100 back", p)
	}
}

// TestOffDoesNothing: no floor, or GOGC=off, leaves GOGC as it is.
func TestOffDoesNothing(t *testing.T) {
	base := debug.SetGCPercent(70)
	defer debug.SetGCPercent(base)
	k := Start(0)
	if p := debug.SetGCPercent(70); p != 70 {
		t.Errorf("GOGC with no floor = %d, want 70", p)
	}
	k.Close()
	debug.SetGCPercent(-1)
	k = Start(64 << 20)
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Errorf("GOGC=off became %d", p)
	}
	k.Close()
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Errorf("GOGC=off became %d after Close", p)
	}
}

// TestFollowsTheLiveHeap: the Keeper raises GOGC while the live heap is
// small and gives back the process's own once the live heap alone leaves
// the floor (woken by the collections, not by Start).
func TestFollowsTheLiveHeap(t *testing.T) {
	base := debug.SetGCPercent(100)
	defer debug.SetGCPercent(base)
	runtime.GC()
	k := Start(32 << 20)
	defer k.Close()
	eventually.Holds(t, 10*time.Second, "GOGC raised over a small live heap", func() error {
		runtime.GC()
		if p := gogcMetric(); p <= 100 {
			return fmt.Errorf("GOGC %d", p)
		}
		return nil
	})
	big := make([][]byte, 96)
	for i := range big {
		big[i] = make([]byte, 1<<20)
	}
	eventually.Holds(t, 10*time.Second, "GOGC back to 100 over a 96 MiB live heap", func() error {
		runtime.GC()
		if p := gogcMetric(); p != 100 {
			return fmt.Errorf("GOGC %d", p)
		}
		return nil
	})
	runtime.KeepAlive(big)
}

func gogcMetric() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}
