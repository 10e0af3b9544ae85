package replication

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"time"

	"parley/store"
)

// rangeAppliers bounds the conversations whose ranges are applied at once:
// their commits share fsyncs.
const rangeAppliers = 16

// routes serves the peer side of anti-entropy.
func (a *antiEntropy) routes(mux *http.ServeMux, signed Signed) {
	mux.HandleFunc("POST "+pathTree, signed(func(w http.ResponseWriter, req *http.Request, body []byte) {
		var in treeRequest
		if err := json.Unmarshal(body, &in); err != nil || in.Level < 0 || in.Level > treeDepth {
			http.Error(w, fmt.Sprintf("bad tree request: %v", err), http.StatusBadRequest)
			return
		}
		mine, err := a.treeFor(in.From, in.Round)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		differ := []uint32{}
		for i, h := range in.Hashes {
			if in.Level == 0 && i != 0 || in.Level > 0 && uint64(i) >= 1<<(treeBits*in.Level) {
				continue
			}
			if mine.hash(in.Level, i) != h {
				differ = append(differ, i)
			}
		}
		slices.Sort(differ)
		json.NewEncoder(w).Encode(differ)
	}))
	mux.HandleFunc("POST "+pathVectors, signed(func(w http.ResponseWriter, req *http.Request, body []byte) {
		var in vectorsRequest
		if err := json.Unmarshal(body, &in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		needs := []need{}
		for _, cv := range in.Convs {
			if a.r.cfg.Control.Serves(cv.Workspace) != nil {
				continue // never pull a pinned workspace outside its region, nor one unknown or deleted here
			}
			have, err := a.r.st.Frontier(cv.Workspace, cv.Conversation)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				continue
			}
			for o, n := range cv.Vector {
				if have[o] < n {
					needs = append(needs, need{Workspace: cv.Workspace, Conversation: cv.Conversation, Origin: o, From: have[o] + 1})
				}
			}
		}
		json.NewEncoder(w).Encode(needs)
	}))
	mux.HandleFunc("POST "+pathRange, signed(func(w http.ResponseWriter, req *http.Request, body []byte) {
		var in rangesRequest
		if err := json.Unmarshal(body, &in); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := a.applyRanges(req.Context(), in.Ranges); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("{}"))
	}))
}

// applyRanges stores the ranges of a request: the ranges of one
// conversation in order, several conversations at once.
func (a *antiEntropy) applyRanges(ctx context.Context, rgs []originRange) error {
	var order []string
	by := map[string][]originRange{}
	for _, rg := range rgs {
		k := rg.Conversation.Workspace + "\x00" + rg.Conversation.ID
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], rg)
	}
	var mu sync.Mutex
	var errs []error
	sem := make(chan struct{}, rangeAppliers)
	var wg sync.WaitGroup
	for _, k := range order {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			for _, rg := range by[k] {
				if err := a.applyRange(ctx, rg); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// applyRange stores an origin's range sent by anti-entropy: its events in
// order, each published at once and all committed together, then the
// origin's frontier at the range's end.
func (a *antiEntropy) applyRange(ctx context.Context, rg originRange) error {
	r, st := a.r, a.r.st
	c := rg.Conversation
	if err := r.servesCaughtUp(ctx, c.Workspace); err != nil {
		return fmt.Errorf("not stored here: %w", err)
	}
	if err := r.newBeforeCatchUp(c.Workspace, c.ID); err != nil {
		return err
	}
	// The gate's positions of this conversation are stale afterwards.
	defer r.gate.Forget(c.Workspace, c.ID)
	start := time.Now()
	have, err := r.have(c.Workspace, c.ID, rg.Origin)
	if err != nil {
		return err
	}
	var waits []<-chan error
	wait := func() error {
		var errs []error
		for _, d := range waits {
			if err := <-d; err != nil {
				errs = append(errs, err)
			}
		}
		waits = nil
		return errors.Join(errs...)
	}
	for _, e := range rg.Events {
		if e.OSeq < rg.From || e.OSeq > rg.To || e.Message.ID == "" {
			return errors.Join(fmt.Errorf("range event %d outside %d..%d", e.OSeq, rg.From, rg.To), wait())
		}
		if e.OSeq <= have {
			continue
		}
		if e.OSeq != have+1 {
			// The oseqs in between changed nothing at the sender: advance
			// past them first, once what precedes is stored.
			if err := wait(); err != nil {
				return err
			}
			if err := st.AdvanceOrigin(ctx, c.Workspace, c.ID, rg.Origin, e.OSeq-1); err != nil {
				return err
			}
		}
		res, durable, err := st.ApplyRemoteAsync(ctx, store.Remote{Conversation: c, Stamp: store.Stamp{Origin: rg.Origin, OSeq: e.OSeq}, Message: e.Message, Start: start})
		if err != nil {
			return errors.Join(err, wait())
		}
		r.uncount(c.Workspace, res)
		waits = append(waits, durable)
		have = e.OSeq
	}
	if err := wait(); err != nil {
		return err
	}
	if have >= rg.To {
		return nil
	}
	if _, err := st.Frontier(c.Workspace, c.ID); err != nil {
		return nil // nothing of it here: nothing to advance
	}
	return st.AdvanceOrigin(ctx, c.Workspace, c.ID, rg.Origin, rg.To)
}
