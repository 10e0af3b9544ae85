package gateway

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// fakePrivacy erases at once when immediate, and records who asked.
type fakePrivacy struct {
	mu        sync.Mutex
	immediate bool
	fail      bool
	asked     []string
}

func (p *fakePrivacy) Forget(_ context.Context, ws, visitor string) (bool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail {
		return false, errors.New("no leader")
	}
	p.asked = append(p.asked, ws+"/"+visitor)
	return p.immediate, nil
}

// TestForgetAsksForTheVisitor: a visitor's forget reaches Config.Privacy
// with the connection's workspace and participant, and forgotten says
// whether they were erased at once; an agent's is forbidden; a failure is
// internal.
func TestForgetAsksForTheVisitor(t *testing.T) {
	t.Parallel()
	p := &fakePrivacy{}
	e := newEnv(t, func(c *Config) { c.Privacy = p })
	v, welcome := e.visitor(t, "ws1", nil)
	for _, immediate := range []bool{false, true} {
		p.mu.Lock()
		p.immediate = immediate
		p.mu.Unlock()
		r := v.ref()
		v.send(map[string]any{"type": "forget", "ref": r})
		if m := v.expect("forgotten", refIs(r)); m["erased"] != immediate {
			t.Fatalf("forgotten %v, want erased %v", m, immediate)
		}
	}
	p.mu.Lock()
	asked := p.asked
	p.fail = true
	p.mu.Unlock()
	want := "ws1/v:" + welcome["visitor_id"].(string)
	if len(asked) != 2 || asked[0] != want || asked[1] != want {
		t.Fatalf("asked %v, want %s twice", asked, want)
	}
	r := v.ref()
	v.send(map[string]any{"type": "forget", "ref": r})
	if m := v.expect("error", refIs(r)); m["code"] != "internal" {
		t.Fatalf("a failed forget answered %v", m)
	}
	ag := e.agent(t, "ws1")
	r = ag.ref()
	ag.send(map[string]any{"type": "forget", "ref": r})
	if m := ag.expect("error", refIs(r)); m["code"] != "forbidden" {
		t.Fatalf("an agent's forget answered %v", m)
	}
}
