package node

import (
	"context"
	"fmt"
	"slices"
	"time"

	"parley/cluster"
	"parley/cluster/residency"
)

// visitorPrivacy takes a visitor's request to be forgotten from the
// gateway (gateway.Privacy): by the workspace's choice it erases the
// visitor at once (EraseVisitor) or records the request for an agent to
// confirm (RequestDeletion). An immediate erasure is answered once this
// node has erased the visitor's conversations it holds, so the widget's
// "deleted" is true of the node that says it.
type visitorPrivacy struct {
	ctl      *control
	erasures *residency.Erasures
}

func (p visitorPrivacy) Forget(ctx context.Context, ws, visitor string) (bool, error) {
	w, err := p.ctl.c.Workspace(ws)
	if err != nil {
		return false, fmt.Errorf("forget: %w", err)
	}
	if w.VisitorDeletion == cluster.DeletionImmediate {
		res, err := p.ctl.c.Apply(ctx, cluster.EraseVisitor{Workspace: ws, Visitor: visitor})
		if err != nil {
			return false, fmt.Errorf("forget: %w", err)
		}
		if err := p.erasures.Wait(ctx, res.Index); err != nil {
			return false, fmt.Errorf("forget: erasing here: %w", err)
		}
		p.ctl.log.Info("visitor forgotten at their request", "workspace", ws)
		return true, nil
	}
	// A request already pending needs no second record.
	pending, err := p.ctl.c.DeletionRequests(ws)
	if err != nil {
		return false, fmt.Errorf("forget: %w", err)
	}
	if slices.ContainsFunc(pending, func(r cluster.DeletionRequest) bool { return r.Visitor == visitor }) {
		return false, nil
	}
	if _, err := p.ctl.c.Apply(ctx, cluster.RequestDeletion{Workspace: ws, Visitor: visitor, At: time.Now().UTC()}); err != nil {
		return false, fmt.Errorf("forget: %w", err)
	}
	return false, nil
}
