package gateway

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"parley/gateway/wire"
	"parley/ident"
	"parley/store"
)

// Post is a message change made through the node's conversations API
// rather than a connection: an agent's or a bot's send, edit or delete.
// It takes the path of a connection's change (session.go): the same
// validation, shedding, plan and budgets, the same store (on a node with
// peers, answered once a second replica holds the change) and the same
// fan-out, so that every subscriber sees it as any agent's message.
type Post struct {
	// Kind is wire.TypeSend, wire.TypeEdit or wire.TypeDelete.
	Kind         string
	Workspace    string
	Conversation string
	// ID is the message's: the client's idempotency key for a send, the
	// message changed for an edit or a delete.
	ID   string
	Body string // send and edit
	// Participant, Role and Name are the author: "a:<operator>" with
	// ident.Agent, or "b:<key>" with ident.Bot.
	Participant string
	Role        ident.Role
	Name        string
}

// Posted is what a Post did: the event's seq on this node (a resend's
// or an unchanged edit's, the message's existing one), whether it changed
// nothing because it was done already (Dup), and the message's state.
type Posted struct {
	Seq     uint64
	Dup     bool
	Message wire.Message
}

// PostError is a refused Post: a wire error code (docs/protocol.md) and,
// for rate_limited and overloaded, how long until it may be tried again.
type PostError struct {
	Code    string
	Message string
	Retry   time.Duration
}

func (e *PostError) Error() string { return e.Code + ": " + e.Message }

// PostTransport names the conversations API in the transport label of the
// gateway's metrics.
const PostTransport = "http"

// Post validates p as the wire validates a frame, then applies it as a
// connection's change is applied, and returns once it is durable (and
// confirmed by a second replica on a node with peers). A refusal is a
// *PostError; nothing was stored then, but for an unavailable one (stored
// here, not confirmed in time): retry it with the same ID.
func (s *Server) Post(ctx context.Context, p Post) (Posted, error) {
	res, err := s.post(ctx, p)
	if err != nil {
		// Counted as a connection's refusals are (parley_errors_total).
		code := wire.CodeInternal
		if pe := (*PostError)(nil); errors.As(err, &pe) {
			code = pe.Code
		}
		s.metrics.Error(code)
	}
	return res, err
}

func (s *Server) post(ctx context.Context, p Post) (Posted, error) {
	now := time.Now()
	f := inFrame{Type: p.Kind, Conversation: p.Conversation, ID: p.ID}
	if p.Kind != wire.TypeDelete {
		f.Body = &p.Body
	}
	if p.Kind != wire.TypeSend && p.Kind != wire.TypeEdit && p.Kind != wire.TypeDelete {
		return Posted{}, &PostError{Code: wire.CodeBadRequest, Message: "kind: send, edit or delete"}
	}
	if werr := f.validate(); werr != nil {
		return Posted{}, postErr(werr)
	}
	if !ident.ValidID(p.Workspace) || p.Participant == "" || (p.Role != ident.Agent && p.Role != ident.Bot) ||
		utf8.RuneCountInString(p.Name) > maxName || !ident.PrintableName(p.Name) {
		return Posted{}, &PostError{Code: wire.CodeBadRequest, Message: "author: an agent or a bot, with a printable name"}
	}
	r := s.hub.room(p.Workspace)
	if werr := s.shed.overloaded(r, now); werr != nil {
		return Posted{}, postErr(werr)
	}
	rec, err := s.Held(ctx, p.Workspace, p.Conversation)
	if err != nil {
		return Posted{}, s.postStoreErr(err)
	}
	first := p.Kind == wire.TypeSend && rec.Last == nil
	ch := changeOf(f, p.Workspace, p.Participant, p.Role, p.Name)
	act, werr := s.admitChange(ch, "", false, first, now)
	if werr != nil {
		return Posted{}, postErr(werr)
	}
	s.stampChange(&ch, now, PostTransport)
	s.shed.taken()
	res, err := s.applyChange(ctx, ch, "", act, first, now)
	if err != nil {
		return Posted{}, s.postStoreErr(err)
	}
	return Posted{Seq: res.Seq, Dup: res.Dup, Message: toWire(res.Message)}, nil
}

// postErr turns a wire error into a PostError.
func postErr(e *wireError) *PostError {
	return &PostError{Code: e.Code, Message: e.Message, Retry: time.Duration(e.retry) * time.Millisecond}
}

// postStoreErr maps a store error as a connection's change maps it.
func (s *Server) postStoreErr(err error) error {
	if e := storeWireError(err); e != nil {
		return postErr(e)
	}
	return err
}

// Held is a conversation of ws as the conversations API reads it (any
// conversation of the workspace: an agent's or a bot's): one this node
// does not hold is fetched from its replicas first (Config.Fetch), within
// FetchWait. The error wraps store.ErrNotFound when no replica holds it,
// ErrReplicasUnreachable when they could not be asked.
func (s *Server) Held(ctx context.Context, ws, conv string) (store.Conversation, error) {
	rec, err := s.cfg.Store.Conversation(ws, conv)
	if !errors.Is(err, store.ErrNotFound) || s.cfg.Fetch == nil {
		return rec, err
	}
	return s.fetch(ctx, ws, conv, "")
}

// fetch brings a conversation this node does not hold from its replicas
// (Config.Fetch), waiting at most FetchWait, and reads it again; owner is
// a visitor's, "" for anyone who may read any conversation of ws.
func (s *Server) fetch(ctx context.Context, ws, conv, owner string) (store.Conversation, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.FetchWait)
	defer cancel()
	if err := s.cfg.Fetch.Fetch(ctx, ws, conv, owner); err != nil {
		if !errors.Is(err, store.ErrNotFound) && !errors.Is(err, ErrReplicasUnreachable) {
			err = fmt.Errorf("%w: %w", ErrReplicasUnreachable, err)
		}
		return store.Conversation{}, err
	}
	return s.cfg.Store.Conversation(ws, conv)
}
