package gateway

import (
	"math"
	"time"
)

// tokenBucket is the budgets' token bucket: the arithmetic of
// golang.org/x/time/rate's Limiter (v0.16.0) for what budgets.take does
// with it, reserve one token and cancel the reservation, without its
// mutex (the budgets' lock guards every bucket) and without the
// allocation its ReserveN makes for each reservation. The same float
// operations in the same order: the same tokens, the same refusals and
// the same waits (TestTokenBucketIsRateLimiter drives both alike).
type tokenBucket struct {
	limit     float64 // tokens per second; math.MaxFloat64 (rate.Inf): no limit
	burst     int
	tokens    float64
	last      time.Time // when tokens was last brought up to date
	lastEvent time.Time // the latest reservation's time to act
}

// infLimit is rate.Inf.
const infLimit = math.MaxFloat64

// infDuration is rate.InfDuration.
const infDuration = time.Duration(math.MaxInt64)

// newTokenBucket is rate.NewLimiter(rate.Limit(limit), burst): full.
func newTokenBucket(limit float64, burst int) tokenBucket {
	return tokenBucket{limit: limit, burst: burst, tokens: float64(burst)}
}

// reservation is a token taken from a bucket (or, !ok, refused): a
// rate.Reservation held by value.
type reservation struct {
	ok        bool
	tokens    int
	timeToAct time.Time
	limit     float64 // the bucket's limit when taken
}

// delayFrom is rate.Reservation.DelayFrom.
func (r *reservation) delayFrom(t time.Time) time.Duration {
	if !r.ok {
		return infDuration
	}
	delay := r.timeToAct.Sub(t)
	if delay < 0 {
		return 0
	}
	return delay
}

// reserve is rate.Limiter.ReserveN(t, 1).
func (k *tokenBucket) reserve(t time.Time) reservation {
	const n = 1
	if k.limit == infLimit {
		return reservation{ok: true, tokens: n, timeToAct: t}
	}
	tokens := k.advance(t)
	tokens -= float64(n)
	var waitDuration time.Duration
	if tokens < 0 {
		waitDuration = durationFromTokens(k.limit, -tokens)
	}
	ok := n <= k.burst && waitDuration <= infDuration
	r := reservation{ok: ok, limit: k.limit}
	if ok {
		r.tokens = n
		r.timeToAct = t.Add(waitDuration)
		k.last = t
		k.tokens = tokens
		k.lastEvent = r.timeToAct
	}
	return r
}

// cancel is rate.Reservation.CancelAt(t) of r, a reservation of k's.
func (k *tokenBucket) cancel(r *reservation, t time.Time) {
	if !r.ok {
		return
	}
	if k.limit == infLimit || r.tokens == 0 || r.timeToAct.Before(t) {
		return
	}
	restoreTokens := float64(r.tokens) - tokensFromDuration(r.limit, k.lastEvent.Sub(r.timeToAct))
	if restoreTokens <= 0 {
		return
	}
	tokens := k.advance(t)
	tokens += restoreTokens
	if burst := float64(k.burst); tokens > burst {
		tokens = burst
	}
	k.last = t
	k.tokens = tokens
	if r.timeToAct.Equal(k.lastEvent) {
		prevEvent := r.timeToAct.Add(durationFromTokens(r.limit, float64(-r.tokens)))
		if !prevEvent.Before(t) {
			k.lastEvent = prevEvent
		}
	}
}

// setLimitAt is rate.Limiter.SetLimitAt.
func (k *tokenBucket) setLimitAt(t time.Time, limit float64) {
	k.tokens = k.advance(t)
	k.last = t
	k.limit = limit
}

// setBurstAt is rate.Limiter.SetBurstAt.
func (k *tokenBucket) setBurstAt(t time.Time, burst int) {
	k.tokens = k.advance(t)
	k.last = t
	k.burst = burst
}

// tokensAt is rate.Limiter.TokensAt: the tokens the bucket has at t.
func (k *tokenBucket) tokensAt(t time.Time) float64 {
	return k.advance(t)
}

// advance is rate.Limiter.advance: the tokens at t, state unchanged.
func (k *tokenBucket) advance(t time.Time) float64 {
	last := k.last
	if t.Before(last) {
		last = t
	}
	elapsed := t.Sub(last)
	delta := tokensFromDuration(k.limit, elapsed)
	tokens := k.tokens + delta
	if burst := float64(k.burst); tokens > burst {
		tokens = burst
	}
	return tokens
}

// durationFromTokens is rate.Limit.durationFromTokens.
func durationFromTokens(limit, tokens float64) time.Duration {
	if limit <= 0 {
		return infDuration
	}
	duration := (tokens / limit) * float64(time.Second)
	if duration > float64(math.MaxInt64) {
		return infDuration
	}
	return time.Duration(duration)
}

// tokensFromDuration is rate.Limit.tokensFromDuration.
func tokensFromDuration(limit float64, d time.Duration) float64 {
	if limit <= 0 {
		return 0
	}
	return d.Seconds() * limit
}
