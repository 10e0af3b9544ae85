package bench

import (
	"context"
	"math"
	"time"
)

// Schedule gives every message of an open-loop run its due time: the
// arrival rate rises linearly from 0 to Rate over RampUp, then stays at
// Rate. Due times depend only on the message's index, never on how fast the
// node answered earlier messages: a slow node makes messages late, and the
// lateness is measured (latency counts from the due time), instead of
// quietly lowering the load (coordinated omission).
type Schedule struct {
	Rate   float64       // messages per second after ramp-up
	RampUp time.Duration // linear ramp from 0
}

// arrivals is the expected number of messages issued by time t: the
// integral of the rate.
func (s Schedule) arrivals(t time.Duration) float64 {
	if t <= 0 || s.Rate <= 0 {
		return 0
	}
	sec, ramp := t.Seconds(), s.RampUp.Seconds()
	if sec <= ramp {
		return s.Rate * sec * sec / (2 * ramp)
	}
	return s.Rate*ramp/2 + s.Rate*(sec-ramp)
}

// Due is when message k (0-based) is due, from the start of the send
// phase: the time at which arrivals reaches k.
func (s Schedule) Due(k int) time.Duration {
	if k <= 0 || s.Rate <= 0 {
		return 0
	}
	ramp := s.RampUp.Seconds()
	kf := float64(k)
	var sec float64
	if rampMsgs := s.Rate * ramp / 2; kf <= rampMsgs && ramp > 0 {
		sec = math.Sqrt(2 * ramp * kf / s.Rate)
	} else {
		sec = ramp + (kf-rampMsgs)/s.Rate
	}
	return time.Duration(math.Round(sec * float64(time.Second)))
}

// CountBefore is the number of messages due strictly before d.
func (s Schedule) CountBefore(d time.Duration) int {
	a := s.arrivals(d)
	if a <= 0 {
		return 0
	}
	n := int(math.Ceil(a - 1e-9))
	// Rounding of Due may put the last one at or after d: trim.
	for n > 0 && s.Due(n-1) >= d {
		n--
	}
	return n
}

// Clock is the time source of the scheduler; tests use a fake one.
type Clock interface {
	Now() time.Time
	// SleepUntil returns at or after t, or early with ctx's error.
	SleepUntil(ctx context.Context, t time.Time) error
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// SleepUntil sleeps until t.
func (RealClock) SleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RunSchedule issues messages 0..total-1 at their due times from start by
// calling dispatch, which must not block on the node (it queues). When the
// scheduler falls behind (a slow dispatch, a descheduled process), it issues
// every overdue message at once, each with its original due time: the due
// times never drift. It returns how many messages it issued, fewer than
// total when ctx ends first.
func RunSchedule(ctx context.Context, clk Clock, s Schedule, start time.Time, total int, dispatch func(k int, due time.Time)) int {
	for k := 0; k < total; k++ {
		due := start.Add(s.Due(k))
		if clk.Now().Before(due) {
			if clk.SleepUntil(ctx, due) != nil {
				return k
			}
		} else if ctx.Err() != nil {
			return k
		}
		dispatch(k, due)
	}
	return total
}
