package cluster

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"parley/cluster/schema"
)

// E-mail settings of a workspace (schema/email.go). The SMTP password or
// API key is sealed under the master key like a webhook's secret, bound to
// its workspace, so the log, the snapshots and every FSM hold only
// ciphertext; the node sending a mail opens it. No read returns it.

// emailKind is the sealing slot of a workspace's SMTP secret.
const emailKind SecretKind = "email/smtp"

// emailRecord is a workspace's SMTP settings with the sealed secret.
type emailRecord struct {
	Settings EmailSettings `json:"settings"`
	Sealed   *Sealed       `json:"sealed,omitempty"`
}

func (s *State) applySetEmailSettings(c *SetEmailSettings) (Result, error) {
	ws, err := s.d.workspace(c.Settings.Workspace)
	if err != nil {
		return Result{}, err
	}
	rec := &emailRecord{Settings: c.Settings}
	if ws.Email != nil {
		rec.Settings.Created = ws.Email.Settings.Created
		if c.Sealed == nil && !c.Clear {
			rec.Sealed = ws.Email.Sealed
		}
	}
	if c.Sealed != nil {
		sl := *c.Sealed
		rec.Sealed = &sl
	}
	rec.Settings.PasswordSet = rec.Sealed != nil
	ws.Email = rec
	return Result{}, nil
}

func (s *State) applyDeleteEmailSettings(c *DeleteEmailSettings) (Result, error) {
	ws, err := s.d.workspace(c.Workspace)
	if err != nil {
		return Result{}, err
	}
	if ws.Email == nil {
		return Result{}, fmt.Errorf("e-mail settings of %s: %w", c.Workspace, ErrNotFound)
	}
	ws.Email = nil
	return Result{}, nil
}

func (s *State) applyRecordMail(c *RecordMail) (Result, error) {
	ws, err := s.d.workspace(c.Workspace)
	if err != nil {
		return Result{}, nil // deleted meanwhile
	}
	if _, erased := ws.Erased[c.Conversation]; erased {
		return Result{}, nil
	}
	m := ws.Mail[c.Conversation]
	if m == nil {
		m = &MailState{Conversation: c.Conversation}
		ws.Mail[c.Conversation] = m
	}
	m.Kind, m.Status, m.Error, m.Attempts, m.At = c.Kind, c.Status, c.Error, c.Attempts, c.At
	if c.Status == schema.MailRetrying {
		return Result{}, nil
	}
	cur := &m.Mailed
	if c.Kind == schema.MailTranscript {
		cur = &m.Transcripts
		if c.Status == schema.MailSent {
			m.TranscriptAt = c.At
		}
	}
	if *cur == nil {
		*cur = map[string]uint64{}
	}
	for o, n := range c.Through {
		(*cur)[o] = max((*cur)[o], n)
	}
	if c.Status == schema.MailSent {
		m.Sent++
	} else {
		m.Failed++
	}
	return Result{}, nil
}

// EmailSettings returns a workspace's SMTP settings, never the secret;
// ErrNotFound when it has none.
func (s *State) EmailSettings(workspace string) (EmailSettings, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ws, err := s.d.workspace(workspace)
	if err != nil {
		return EmailSettings{}, err
	}
	if ws.Email == nil {
		return EmailSettings{}, fmt.Errorf("e-mail settings of %s: %w", workspace, ErrNotFound)
	}
	return ws.Email.Settings, nil
}

// EmailWorkspaces lists the workspaces with SMTP settings.
func (s *State) EmailWorkspaces() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for id, ws := range s.d.Workspaces {
		if ws.Email != nil {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// MailState returns a conversation's mail state; the zero state (with the
// conversation) when nothing was mailed yet.
func (s *State) MailState(workspace, conv string) (MailState, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ws, err := s.d.workspace(workspace)
	if err != nil {
		return MailState{}, err
	}
	m := ws.Mail[conv]
	if m == nil {
		return MailState{Conversation: conv}, nil
	}
	return cloneMail(m), nil
}

// MailStates lists a workspace's conversations' mail states, by
// conversation; only those with Status, when it is not empty.
func (s *State) MailStates(workspace, status string) ([]MailState, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ws, err := s.d.workspace(workspace)
	if err != nil {
		return nil, err
	}
	out := []MailState{}
	for _, m := range sortedValues(ws.Mail) {
		if status == "" || m.Status == status {
			out = append(out, cloneMail(m))
		}
	}
	return out, nil
}

func cloneMail(m *MailState) MailState {
	x := *m
	x.Mailed = maps.Clone(m.Mailed)
	x.Transcripts = maps.Clone(m.Transcripts)
	return x
}

// SetEmailSettings seals secret on this node (when not nil; "" clears the
// one held) and sets a workspace's SMTP settings. Created and Updated are
// set here.
func (c *Cluster) SetEmailSettings(ctx context.Context, st EmailSettings, secret *string) (EmailSettings, Result, error) {
	now := time.Now().UTC()
	st.Updated, st.Created = now, now
	if old, err := c.State.EmailSettings(st.Workspace); err == nil {
		st.Created = old.Created
	}
	cmd := SetEmailSettings{Settings: st}
	if secret != nil && *secret == "" {
		cmd.Clear = true
	} else if secret != nil {
		sl, err := c.sealer.seal(st.Workspace, emailKind, []byte(*secret))
		if err != nil {
			return EmailSettings{}, Result{}, err
		}
		cmd.Sealed = &sl
	}
	res, err := c.Apply(ctx, cmd)
	if err != nil {
		return EmailSettings{}, res, err
	}
	if err := c.WaitApplied(ctx, res.Index); err != nil {
		return EmailSettings{}, res, err
	}
	out, err := c.State.EmailSettings(st.Workspace)
	return out, res, err
}

// EmailSecret decrypts a workspace's SMTP password or API key from this
// node's state; nil when none is held.
func (c *Cluster) EmailSecret(workspace string) ([]byte, error) {
	c.State.mu.RLock()
	ws, err := c.State.d.workspace(workspace)
	var sl *Sealed
	if err == nil && ws.Email != nil {
		sl = ws.Email.Sealed
	} else if err == nil {
		err = fmt.Errorf("e-mail settings of %s: %w", workspace, ErrNotFound)
	}
	c.State.mu.RUnlock()
	if err != nil || sl == nil {
		return nil, err
	}
	return c.sealer.open(workspace, emailKind, *sl)
}
