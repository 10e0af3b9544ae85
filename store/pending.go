package store

import (
	"sort"
	"sync"
)

// pendingEvents holds the message events published but not yet committed.
// A resume subscribes to live events and then reads the log; an event
// published just before the subscription and committed just after the read
// would be in neither, so Events reads this set too.
type pendingEvents struct {
	mu sync.Mutex
	// m holds the events in seq order per conversation: each is its
	// sequenced write's (write.ev), which outlives its place here.
	m map[convKey][]*Event
}

// add adds the event of a sequenced write.
func (p *pendingEvents) add(e *Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[convKey][]*Event{}
	}
	k := convKey{e.Workspace, e.Conversation}
	p.m[k] = append(p.m[k], e)
}

// remove forgets the events of the sequenced writes among ops once
// committed (or once their commit failed, when they will never be readable:
// seq epochs keep them from being reused).
func (p *pendingEvents) remove(ops []*op) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, o := range ops {
		w := o.seq
		if w == nil || w.advance {
			continue
		}
		k := convKey{w.ws, w.conv}
		list := p.m[k]
		if len(list) > 0 && list[0].Seq == w.ev[0].Seq {
			// Commits come in seq order: the oldest goes, without a copy.
			list[0] = nil
			list = list[1:]
		} else {
			list = removeSeq(list, w.ev[0].Seq)
		}
		if len(list) == 0 {
			delete(p.m, k)
		} else {
			p.m[k] = list
		}
	}
}

// removeSeq removes the event of seq from list, keeping the order.
func removeSeq(list []*Event, seq uint64) []*Event {
	for i := range list {
		if list[i].Seq == seq {
			copy(list[i:], list[i+1:])
			list[len(list)-1] = nil
			return list[:len(list)-1]
		}
	}
	return list
}

// after returns a copy of the pending events of a conversation above seq.
func (p *pendingEvents) after(ws, conv string, seq uint64) []Event {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Event
	for _, e := range p.m[convKey{ws, conv}] {
		if e.Seq > seq {
			out = append(out, *e)
		}
	}
	return out
}

// mergeEvents merges committed and pending events by seq, without repeats,
// up to limit, and says whether more remain.
func mergeEvents(committed, pending []Event, limit int) ([]Event, bool) {
	all := append(committed, pending...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].Seq < all[j].Seq })
	out := all[:0]
	for i, e := range all {
		if i > 0 && e.Seq == all[i-1].Seq {
			continue
		}
		out = append(out, e)
	}
	if len(out) > limit {
		return out[:limit], true
	}
	return out, false
}
