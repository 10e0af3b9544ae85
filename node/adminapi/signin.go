package adminapi

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Sign-in attempts are limited twice before any password is checked:
//   - per client address: 5 a second, bursts of 10 (addressLimits);
//   - per account (workspace and email, whether or not the email exists,
//     so the limit tells nothing): after accountFree failures in a row,
//     every attempt from any address is refused for a back-off that
//     doubles with each further failure, from backoffBase up to backoffMax
//     (accountBackoff). A successful sign-in clears the account's record.
//
// Both are this node's: N nodes behind a balancer allow N times as many
// guesses, still a few hundred a day per account at the longest back-off.
const (
	accountFree  = 5
	backoffBase  = time.Second
	backoffMax   = 5 * time.Minute
	maxTracked   = 100_000
	forgetQuiet  = time.Hour
	addressRate  = 5
	addressBurst = 10
)

// addressLimits limits sign-in attempts per client address.
type addressLimits struct {
	mu sync.Mutex
	m  map[string]*rate.Limiter
}

func (l *addressLimits) allow(r *http.Request) bool {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil || len(l.m) > 10_000 {
		l.m = map[string]*rate.Limiter{}
	}
	lim := l.m[ip]
	if lim == nil {
		lim = rate.NewLimiter(addressRate, addressBurst)
		l.m[ip] = lim
	}
	return lim.Allow()
}

// accountBackoff tracks failed sign-ins per account.
type accountBackoff struct {
	now func() time.Time
	mu  sync.Mutex
	m   map[string]*failures
}

type failures struct {
	n     int       // failures in a row
	until time.Time // refused until then
	last  time.Time // the last failure
}

func accountKey(workspace, email string) string {
	return workspace + "\x00" + strings.ToLower(email)
}

// wait is how long the account must wait before its next attempt; zero
// when it may try now.
func (b *accountBackoff) wait(workspace, email string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.m[accountKey(workspace, email)]
	if f == nil {
		return 0
	}
	return max(0, f.until.Sub(b.now()))
}

// failed records a wrong password (or unknown email) for the account.
func (b *accountBackoff) failed(workspace, email string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	k := accountKey(workspace, email)
	f := b.m[k]
	if f == nil {
		if b.m == nil {
			b.m = map[string]*failures{}
		}
		if len(b.m) >= maxTracked {
			b.sweep(now)
		}
		f = &failures{}
		b.m[k] = f
	}
	f.n++
	f.last = now
	if f.n >= accountFree {
		f.until = now.Add(min(backoffMax, backoffBase<<min(f.n-accountFree, 20)))
	}
}

// succeeded clears the account's failures.
func (b *accountBackoff) succeeded(workspace, email string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.m, accountKey(workspace, email))
}

// sweep forgets accounts quiet for forgetQuiet, then, if the table is
// still full, those not in a back-off: an attacker filling the table with
// made-up emails cannot push out an account that is being guessed.
func (b *accountBackoff) sweep(now time.Time) {
	for k, f := range b.m {
		if now.Sub(f.last) > forgetQuiet && !now.Before(f.until) {
			delete(b.m, k)
		}
	}
	if len(b.m) < maxTracked {
		return
	}
	for k, f := range b.m {
		if !now.Before(f.until) {
			delete(b.m, k)
		}
	}
}
