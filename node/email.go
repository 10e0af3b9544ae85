package node

import (
	"context"

	"parley/cluster/schema"
	"parley/email"
)

// newMailer makes the node's e-mail sender (package email).
func (n *Node) newMailer() *email.Sender {
	return email.New(email.Config{
		Self:           n.cfg.NodeID,
		Store:          n.store,
		Control:        emailControl{n.ctl},
		Members:        n.gossip.m,
		Presence:       n.gw,
		AllowPlaintext: n.cfg.EmailAllowPlaintext,
		Batch:          n.cfg.EmailBatch,
		BackoffMax:     n.cfg.EmailBackoffMax,
		Timeout:        n.cfg.EmailTimeout,
		Registerer:     n.metrics.reg,
		Logger:         n.log,
	})
}

// emailControl is what the e-mail sender reads of and writes to the
// control plane.
type emailControl struct{ ctl *control }

func (e emailControl) EmailWorkspaces() []string { return e.ctl.c.EmailWorkspaces() }

func (e emailControl) EmailSettings(ws string) (schema.EmailSettings, error) {
	return e.ctl.c.EmailSettings(ws)
}

func (e emailControl) EmailSecret(ws string) ([]byte, error) { return e.ctl.c.EmailSecret(ws) }

func (e emailControl) MailState(ws, conv string) (schema.MailState, error) {
	return e.ctl.c.MailState(ws, conv)
}

func (e emailControl) Region(ws string) string { return e.ctl.Region(ws) }

// Apply returns once this node applied the command too: the sender's next
// look at the conversation reads the cursor it moved.
func (e emailControl) Apply(ctx context.Context, cmd schema.Command) error {
	res, err := e.ctl.c.Apply(ctx, cmd)
	if err != nil {
		return err
	}
	return e.ctl.c.WaitApplied(ctx, res.Index)
}
