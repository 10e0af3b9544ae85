package gateway

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// TestTokenBucketIsRateLimiter drives tokenBucket and rate.Limiter alike,
// as budgets.take used them (reserve one token from each of up to three
// buckets, cancel all when one has none yet or the plan refuses, resize
// a share) at random times, with random rates and bursts (none and no
// limit among them), and checks every answer and every bucket's tokens
// after each step, to the bit.
func TestTokenBucketIsRateLimiter(t *testing.T) {
	limits := []float64{0, 0.01, 0.37, 1, 3.3, 20, 2000, 1e6, infLimit}
	bursts := []int{0, 1, 2, 3, 20, 100}
	for seed := uint64(0); seed < 300; seed++ {
		rng := rand.New(rand.NewPCG(seed, 16))
		const nb = 3
		var (
			ours   [nb]tokenBucket
			theirs [nb]*rate.Limiter
		)
		for i := range ours {
			l, b := limits[rng.IntN(len(limits))], bursts[rng.IntN(len(bursts))]
			ours[i] = newTokenBucket(l, b)
			theirs[i] = rate.NewLimiter(rate.Limit(l), b)
		}
		now := time.Unix(1_700_000_000, 0)
		for step := 0; step < 400; step++ {
			switch r := rng.IntN(10); {
			case r < 5:
				now = now.Add(time.Duration(rng.IntN(int(50 * time.Millisecond))))
			case r < 6:
				now = now.Add(time.Duration(rng.IntN(int(5 * time.Second))))
			case r < 7:
				now = now.Add(-time.Duration(rng.IntN(int(time.Second)))) // never in take; here too
			}
			switch op := rng.IntN(10); {
			case op < 8: // take from a run of the buckets
				from := rng.IntN(nb)
				to := from + 1 + rng.IntN(nb-from)
				planRefuses := rng.IntN(5) == 0
				wantOK, wantD, wantAt := takeLimiters(theirs[from:to], now, planRefuses)
				gotOK, gotD, gotAt := takeBuckets(ours[from:to], now, planRefuses)
				if gotOK != wantOK || gotD != wantD || gotAt != wantAt {
					t.Fatalf("seed %d step %d: take %v %v at %d, rate.Limiter %v %v at %d", seed, step, gotOK, gotD, gotAt, wantOK, wantD, wantAt)
				}
			case op < 9:
				i, l := rng.IntN(nb), limits[rng.IntN(len(limits))]
				ours[i].setLimitAt(now, l)
				theirs[i].SetLimitAt(now, rate.Limit(l))
			default:
				i, b := rng.IntN(nb), bursts[rng.IntN(len(bursts))]
				ours[i].setBurstAt(now, b)
				theirs[i].SetBurstAt(now, b)
			}
			for i := range ours {
				for _, at := range []time.Time{now, now.Add(time.Duration(rng.IntN(int(time.Second))))} {
					got, want := ours[i].tokensAt(at), theirs[i].TokensAt(at)
					if math.Float64bits(got) != math.Float64bits(want) {
						t.Fatalf("seed %d step %d: bucket %d has %v tokens, rate.Limiter %v", seed, step, i, got, want)
					}
				}
			}
		}
	}
}

// takeLimiters is budgets.take's use of rate.Limiter before tokenBucket:
// whether every bucket gave a token, else the wait budgets.take reported
// and which bucket refused.
func takeLimiters(lims []*rate.Limiter, now time.Time, planRefuses bool) (bool, time.Duration, int) {
	var taken []*rate.Reservation
	for i, l := range lims {
		r := l.ReserveN(now, 1)
		if d := r.DelayFrom(now); !r.OK() || d > 0 {
			if !r.OK() {
				d = time.Second
			}
			r.CancelAt(now)
			for _, t := range taken {
				t.CancelAt(now)
			}
			return false, d, i
		}
		taken = append(taken, r)
	}
	if planRefuses {
		for _, t := range taken {
			t.CancelAt(now)
		}
		return false, 0, -1
	}
	return true, 0, -1
}

// takeBuckets is takeLimiters with tokenBuckets, as budgets.take does it.
func takeBuckets(ks []tokenBucket, now time.Time, planRefuses bool) (bool, time.Duration, int) {
	var rs [3]reservation
	for i := range ks {
		rs[i] = ks[i].reserve(now)
		if d := rs[i].delayFrom(now); !rs[i].ok || d > 0 {
			if !rs[i].ok {
				d = time.Second
			}
			ks[i].cancel(&rs[i], now)
			for j := range i {
				ks[j].cancel(&rs[j], now)
			}
			return false, d, i
		}
	}
	if planRefuses {
		for j := range ks {
			ks[j].cancel(&rs[j], now)
		}
		return false, 0, -1
	}
	return true, 0, -1
}
