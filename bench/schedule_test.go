package bench

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestScheduleDue(t *testing.T) {
	s := Schedule{Rate: 1000}
	for _, k := range []int{0, 1, 999, 1000, 123456} {
		if got, want := s.Due(k), time.Duration(k)*time.Millisecond; got != want {
			t.Errorf("Due(%d) = %s, want %s", k, got, want)
		}
	}
	if n := s.CountBefore(time.Second); n != 1000 {
		t.Errorf("CountBefore(1s) = %d, want 1000", n)
	}
	// Linear ramp over 2 s to 1000/s: 1000 messages in the ramp, then
	// 1000 per second.
	r := Schedule{Rate: 1000, RampUp: 2 * time.Second}
	if n := r.CountBefore(2 * time.Second); n != 1000 {
		t.Errorf("ramp: CountBefore(2s) = %d, want 1000", n)
	}
	if n := r.CountBefore(5 * time.Second); n != 4000 {
		t.Errorf("ramp: CountBefore(5s) = %d, want 4000", n)
	}
	// Half way through the ramp a quarter of its messages are due.
	if n := r.CountBefore(time.Second); n != 250 {
		t.Errorf("ramp: CountBefore(1s) = %d, want 250", n)
	}
	prev := time.Duration(-1)
	for k := 0; k < 5000; k++ {
		d := r.Due(k)
		if d < prev {
			t.Fatalf("Due not monotonic at %d: %s < %s", k, d, prev)
		}
		prev = d
	}
	if d := r.Due(1000); d != 2*time.Second {
		t.Errorf("ramp: Due(1000) = %s, want 2s", d)
	}
	// CountBefore and Due agree.
	for _, d := range []time.Duration{time.Millisecond, 777 * time.Millisecond, 2 * time.Second, 3500 * time.Millisecond} {
		n := r.CountBefore(d)
		if n > 0 && r.Due(n-1) >= d || r.Due(n) < d {
			t.Errorf("CountBefore(%s) = %d, but Due(n-1) = %s, Due(n) = %s", d, n, r.Due(n-1), r.Due(n))
		}
	}
}

// fakeClock is virtual time: sleeping jumps to the wake-up time; a slow
// target advances time as it works.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	sleeps int
}

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sleeps++
	if t.After(f.now) {
		f.now = t
	}
	return ctx.Err()
}

func (f *fakeClock) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// TestOpenLoopSlowTarget: a target that takes 5 ms per message against a
// schedule of one message per millisecond. A closed loop would issue 200
// messages per second and report 5 ms latencies; the open loop issues every
// message with its own due time, never early, and the lateness (what the
// latency measurement adds) grows as the target falls behind.
func TestOpenLoopSlowTarget(t *testing.T) {
	clk := &fakeClock{now: time.Unix(1000, 0)}
	start := clk.Now()
	s := Schedule{Rate: 1000}
	const total = 1000
	var dues []time.Time
	var late []time.Duration
	n := RunSchedule(context.Background(), clk, s, start, total, func(k int, due time.Time) {
		now := clk.Now()
		if now.Before(due) {
			t.Fatalf("message %d issued %s before its due time", k, due.Sub(now))
		}
		dues = append(dues, due)
		late = append(late, now.Sub(due))
		clk.advance(5 * time.Millisecond) // the slow target
	})
	if n != total || len(dues) != total {
		t.Fatalf("issued %d of %d", n, total)
	}
	for k, d := range dues {
		if want := start.Add(time.Duration(k) * time.Millisecond); !d.Equal(want) {
			t.Fatalf("message %d due %s, want %s: due times drifted", k, d.Sub(start), want.Sub(start))
		}
	}
	// Message k is issued at 5k ms but due at k ms: 4k ms late.
	if got, want := late[total-1], time.Duration(4*(total-1))*time.Millisecond; got != want {
		t.Errorf("last message late by %s, want %s", got, want)
	}
	// Behind schedule the scheduler never sleeps.
	if clk.sleeps > 1 {
		t.Errorf("scheduler slept %d times while behind", clk.sleeps)
	}
}

// TestOpenLoopOnTime: a fast target gets every message exactly at its due
// time (virtual clock), and the scheduler stops at ctx's end.
func TestOpenLoopOnTime(t *testing.T) {
	clk := &fakeClock{now: time.Unix(0, 0)}
	start := clk.Now().Add(time.Second)
	s := Schedule{Rate: 200, RampUp: time.Second}
	total := s.CountBefore(3 * time.Second)
	n := RunSchedule(context.Background(), clk, s, start, total, func(k int, due time.Time) {
		if !clk.Now().Equal(due) {
			t.Fatalf("message %d at %s, due %s", k, clk.Now().Sub(start), due.Sub(start))
		}
	})
	if n != total || total != 500 {
		t.Fatalf("issued %d of %d (want 500)", n, total)
	}

	ctx, cancel := context.WithCancel(context.Background())
	n = RunSchedule(ctx, clk, s, clk.Now(), 1000, func(k int, due time.Time) {
		if k == 9 {
			cancel()
		}
	})
	if n != 10 {
		t.Errorf("after cancel: issued %d, want 10", n)
	}
}

// TestOpenLoopRealClock: with the wall clock and a dispatch that stalls now
// and then, the schedule catches up: all messages issued within the
// duration plus the stall, each tagged with its original due time.
func TestOpenLoopRealClock(t *testing.T) {
	s := Schedule{Rate: 2000}
	start := time.Now().Add(10 * time.Millisecond)
	const total = 600 // 300 ms
	var got []time.Time
	var mu sync.Mutex
	RunSchedule(context.Background(), RealClock{}, s, start, total, func(k int, due time.Time) {
		if time.Now().Before(due) {
			t.Errorf("message %d early", k)
		}
		mu.Lock()
		got = append(got, due)
		mu.Unlock()
		if k == 100 {
			time.Sleep(100 * time.Millisecond) // a stall: ~200 messages become overdue
		}
	})
	if len(got) != total {
		t.Fatalf("issued %d", len(got))
	}
	for k, d := range got {
		if !d.Equal(start.Add(s.Due(k))) {
			t.Fatalf("message %d due time drifted", k)
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Errorf("took %s for a 300 ms schedule", el)
	}
}
