package gateway

import (
	"context"

	"parley/gateway/wire"
	"parley/ident"
)

// forget passes a visitor's request to be forgotten to the control plane
// (Config.Privacy): the workspace erases them at once or waits for an
// agent's confirmation; forgotten says which.
func (c *conn) forget(ctx context.Context, f inFrame) *wireError {
	if c.id.Role != ident.Visitor {
		return errf(wire.CodeForbidden, "forget: only visitors ask to be forgotten")
	}
	if c.srv.cfg.Privacy == nil {
		return errf(wire.CodeForbidden, "forget: not offered by this node")
	}
	ws, visitor := c.id.Workspace, c.id.Participant
	c.async(func() {
		erased, err := c.srv.cfg.Privacy.Forget(ctx, ws, visitor)
		if err != nil {
			c.srv.log.Warn("forget failed", "workspace", ws, "err", err)
			c.replyErr(f.Ref, errf(wire.CodeInternal, "forget failed: retry"))
			return
		}
		c.reply(wire.Forgotten{Type: wire.TypeForgotten, Ref: f.Ref, Erased: erased})
	})
	return nil
}
