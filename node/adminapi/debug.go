package adminapi

import (
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"sync"

	"parley/cluster"
	"parley/node/httpapi"
)

// The profiles of the Go runtime (net/http/pprof), for the cluster admin
// token only: a profile shows the node's code paths and, for goroutines,
// the arguments on their stacks. docs/api.md, *Profiling*.
const debugPrefix = "/debug/pprof/"

// RegisterDebug mounts the runtime's profiles under /debug/pprof/ on mux:
// the index, profile (CPU), trace, and the named profiles heap, allocs,
// goroutine, mutex, block, threadcreate. Each needs the cluster admin
// token (401 without a token, 403 with any other credential) and is
// audited like the admin API's routes.
func (a *API) RegisterDebug(mux httpapi.Mux) {
	a.rootOnly(mux, "GET "+debugPrefix+"{$}", http.HandlerFunc(pprof.Index))
	a.rootOnly(mux, "GET "+debugPrefix+"profile", http.HandlerFunc(pprof.Profile))
	a.rootOnly(mux, "GET "+debugPrefix+"trace", http.HandlerFunc(pprof.Trace))
	a.rootOnly(mux, "GET "+debugPrefix+"cmdline", http.HandlerFunc(pprof.Cmdline))
	a.rootOnly(mux, "GET "+debugPrefix+"symbol", http.HandlerFunc(pprof.Symbol))
	for _, name := range []string{"heap", "allocs", "goroutine", "threadcreate"} {
		a.rootOnly(mux, "GET "+debugPrefix+name, pprof.Handler(name))
	}
	a.rootOnly(mux, "GET "+debugPrefix+"mutex", sampled(&mutexSampling,
		func(rate int) { runtime.SetMutexProfileFraction(rate) }, mutexFraction, pprof.Handler("mutex")))
	a.rootOnly(mux, "GET "+debugPrefix+"block", sampled(&blockSampling,
		runtime.SetBlockProfileRate, blockRate, pprof.Handler("block")))
}

// While a mutex or block profile is being taken: one contention event in
// mutexFraction is sampled, and one blocking event per blockRate
// nanoseconds blocked. Otherwise both are off (the runtime's default), so
// the hot path pays nothing for them.
const (
	mutexFraction = 5
	blockRate     = 10_000
	// defaultSampleSeconds is the window of a mutex or block profile
	// asked for without ?seconds=.
	defaultSampleSeconds = 10
)

// sampling counts the requests profiling one kind of event; the first
// turns the sampling on, the last off. The runtime's rates are the
// process's, so the counts are too (several APIs may share a process in
// tests).
type sampling struct {
	mu sync.Mutex
	n  int
}

var mutexSampling, blockSampling sampling

// sampled serves h with its sampling on (set(rate), then set(0)): a
// mutex or block profile only holds what happened while the runtime
// sampled it, so the answer is always a delta over ?seconds= (default 10).
func sampled(s *sampling, set func(rate int), rate int, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("seconds") == "" {
			q.Set("seconds", strconv.Itoa(defaultSampleSeconds))
			r.URL.RawQuery = q.Encode()
		}
		s.mu.Lock()
		if s.n == 0 {
			set(rate)
		}
		s.n++
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.n--
			if s.n == 0 {
				set(0)
			}
			s.mu.Unlock()
		}()
		h.ServeHTTP(w, r)
	})
}

// rootOnly registers h, which writes its own answer, for the cluster admin
// token only; audited like route's requests.
func (a *API) rootOnly(mux httpapi.Mux, pattern string, h http.Handler) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		call := cluster.NewAuditCall(cluster.Actor{Kind: cluster.ActorAnonymous}, httpapi.ClientAddr(r), pattern)
		r = r.WithContext(cluster.WithAudit(r.Context(), call))
		p, err := a.authenticate(r)
		authed := err == nil
		if authed {
			call.SetActor(p.actor())
			err = root(p)
		}
		if err != nil {
			write(w, nil, err)
			a.auditRequest(w, r, pattern, call, authed, err)
			return
		}
		h.ServeHTTP(w, r)
		a.auditRequest(w, r, pattern, call, true, nil)
	})
}
