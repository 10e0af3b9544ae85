package crdt_test

import (
	"errors"
	"math"
	"sync"
	"testing"
	"time"

	"parley/crdt"
)

// fakeTime is a physical clock the test moves by hand, backwards included.
type fakeTime struct {
	mu sync.Mutex
	ms int64
}

func (f *fakeTime) set(ms int64) { f.mu.Lock(); f.ms = ms; f.mu.Unlock() }
func (f *fakeTime) now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return time.UnixMilli(f.ms)
}

func ts(wall int64, logical uint32, node string) crdt.Timestamp {
	return crdt.Timestamp{Wall: wall, Logical: logical, Node: node}
}

func TestTimestampCompare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b crdt.Timestamp
		want int
	}{
		{"equal", ts(5, 1, "a"), ts(5, 1, "a"), 0},
		{"wall first", ts(4, 9, "z"), ts(5, 0, "a"), -1},
		{"then logical", ts(5, 2, "a"), ts(5, 1, "z"), 1},
		{"then node", ts(5, 1, "a"), ts(5, 1, "b"), -1},
		{"zero before all", crdt.Timestamp{}, ts(0, 0, "a"), -1},
		{"negative wall", ts(-1, 0, ""), crdt.Timestamp{}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := tt.a.Compare(tt.b); got != tt.want {
				t.Errorf("%v.Compare(%v) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
			if got := tt.b.Compare(tt.a); got != -tt.want {
				t.Errorf("%v.Compare(%v) = %d, want %d", tt.b, tt.a, got, -tt.want)
			}
			if got := tt.a.After(tt.b); got != (tt.want > 0) {
				t.Errorf("%v.After(%v) = %v", tt.a, tt.b, got)
			}
		})
	}
	if !(crdt.Timestamp{}).IsZero() || ts(0, 0, "a").IsZero() || ts(0, 1, "").IsZero() {
		t.Error("IsZero wrong")
	}
}

func TestClockNowMonotonic(t *testing.T) {
	t.Parallel()
	// Physical time stalls, jumps back twice, then recovers.
	steps := []struct {
		physical int64
		want     crdt.Timestamp
	}{
		{1000, ts(1000, 0, "n")},
		{1000, ts(1000, 1, "n")},
		{999, ts(1000, 2, "n")},
		{500, ts(1000, 3, "n")},
		{1001, ts(1001, 0, "n")},
		{1001, ts(1001, 1, "n")},
		{2000, ts(2000, 0, "n")},
		{0, ts(2000, 1, "n")},
	}
	ft := &fakeTime{}
	c := crdt.NewClock("n", ft.now)
	var prev crdt.Timestamp
	for i, s := range steps {
		ft.set(s.physical)
		got := c.Now()
		if got != s.want {
			t.Errorf("step %d (physical %d): Now() = %v, want %v", i, s.physical, got, s.want)
		}
		if !got.After(prev) {
			t.Errorf("step %d: %v not after %v", i, got, prev)
		}
		if got.Wall < s.physical {
			t.Errorf("step %d: wall %d behind physical %d", i, got.Wall, s.physical)
		}
		prev = got
	}
}

func TestClockLogicalOverflow(t *testing.T) {
	t.Parallel()
	ft := &fakeTime{ms: 1000}
	c := crdt.NewClock("n", ft.now)
	if err := c.Observe(ts(1000, math.MaxUint32, "z")); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Now(), ts(1001, 0, "n"); got != want {
		t.Fatalf("Now() = %v, want %v", got, want)
	}
}

func TestClockObserve(t *testing.T) {
	t.Parallel()
	const phys = 1_000_000
	maxMS := crdt.MaxDrift.Milliseconds()
	tests := []struct {
		name    string
		remote  crdt.Timestamp
		wantErr bool
		want    crdt.Timestamp // the next Now after Observe
	}{
		{"remote ahead", ts(phys+500, 7, "z"), false, ts(phys+500, 8, "n")},
		{"remote same wall, higher logical", ts(phys, 3, "a"), false, ts(phys, 4, "n")},
		{"remote equal to last reading, larger node", ts(phys, 0, "zz"), false, ts(phys, 1, "n")},
		{"remote behind", ts(phys-10, 99, "z"), false, ts(phys, 1, "n")},
		{"zero remote", crdt.Timestamp{}, false, ts(phys, 1, "n")},
		{"remote exactly MaxDrift ahead", ts(phys+maxMS, 0, "z"), false, ts(phys+maxMS, 1, "n")},
		{"remote beyond MaxDrift", ts(phys+maxMS+1, 0, "z"), true, ts(phys, 1, "n")},
		{"remote far beyond MaxDrift", ts(math.MaxInt64, 0, "z"), true, ts(phys, 1, "n")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ft := &fakeTime{ms: phys}
			c := crdt.NewClock("n", ft.now)
			if got := c.Now(); got != ts(phys, 0, "n") {
				t.Fatalf("first Now() = %v", got)
			}
			err := c.Observe(tt.remote)
			if tt.wantErr {
				if !errors.Is(err, crdt.ErrClockDrift) {
					t.Fatalf("Observe(%v) = %v, want ErrClockDrift", tt.remote, err)
				}
				if err == crdt.ErrClockDrift {
					t.Error("error lacks context; want ErrClockDrift wrapped")
				}
			} else if err != nil {
				t.Fatalf("Observe(%v) = %v", tt.remote, err)
			}
			got := c.Now()
			if got != tt.want {
				t.Errorf("Now() after Observe = %v, want %v", got, tt.want)
			}
			if !tt.wantErr && !got.After(tt.remote) {
				t.Errorf("Now() = %v, not after observed %v", got, tt.remote)
			}
		})
	}
}

func TestClockDriftMeasuredFromPhysicalTime(t *testing.T) {
	t.Parallel()
	// Accepting a remote near the limit must not widen the window for the
	// next one: drift is measured from physical time, not the clock's state.
	ft := &fakeTime{ms: 0}
	c := crdt.NewClock("n", ft.now)
	limit := crdt.MaxDrift.Milliseconds()
	if err := c.Observe(ts(limit, 0, "a")); err != nil {
		t.Fatal(err)
	}
	if err := c.Observe(ts(2*limit, 0, "a")); !errors.Is(err, crdt.ErrClockDrift) {
		t.Fatalf("second Observe = %v, want ErrClockDrift", err)
	}
	ft.set(limit)
	if err := c.Observe(ts(2*limit, 0, "a")); err != nil {
		t.Fatalf("Observe after physical time caught up = %v", err)
	}
}

func TestClockNilNowUsesWallTime(t *testing.T) {
	t.Parallel()
	before := time.Now().UnixMilli()
	got := crdt.NewClock("n", nil).Now()
	after := time.Now().UnixMilli()
	if got.Wall < before || got.Wall > after || got.Node != "n" {
		t.Fatalf("Now() = %v, want wall in [%d, %d]", got, before, after)
	}
}

func TestClockConcurrentNowUnique(t *testing.T) {
	t.Parallel()
	ft := &fakeTime{ms: 42} // frozen, so every reading rides on Logical
	c := crdt.NewClock("n", ft.now)
	const workers, each = 8, 500
	out := make([][]crdt.Timestamp, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				out[w] = append(out[w], c.Now())
				_ = c.Observe(ts(42, 0, "x"))
			}
		})
	}
	wg.Wait()
	seen := map[crdt.Timestamp]bool{}
	for _, readings := range out {
		for i, r := range readings {
			if seen[r] {
				t.Fatalf("duplicate reading %v", r)
			}
			seen[r] = true
			if i > 0 && !r.After(readings[i-1]) {
				t.Fatalf("readings of one goroutine not increasing: %v then %v", readings[i-1], r)
			}
		}
	}
}
