package replication

import (
	"encoding/json"
	"errors"
	"fmt"

	"parley/ident"
)

// Frames on a link, one per WebSocket message, JSON: a link carries events
// one way and acknowledgements back.
const (
	// frameEvents carries events; when ID is set the sender waits for an
	// ack of that ID, sent once the receiver has stored them.
	frameEvents = "events"
	// frameAck acknowledges the events frame with the same ID; Error says
	// the receiver could not store them (the sender then counts the peer
	// as not having them).
	frameAck = "ack"
	// frameSignal carries an ephemeral, opaque signal (presence, typing):
	// no ack, no order beyond the link's, lost with the link.
	frameSignal = "signal"
)

type frame struct {
	Type   string  `json:"t"`
	ID     uint64  `json:"id,omitempty"`
	Events []Event `json:"ev,omitempty"`
	Error  string  `json:"err,omitempty"`
	// Gaps, in an ack, are events the receiver lacks before some it got:
	// the sender sends them, and the held-back ones apply.
	Gaps []Gap `json:"gaps,omitempty"`
	// Signal is a signal frame's payload.
	Signal json.RawMessage `json:"sig,omitempty"`
	// Trace, in an events frame, is the W3C traceparent of the sender's
	// span of it (package tracing), when traced: the receiver's span of
	// the frame continues that trace. Optional: a node that does not
	// trace, or of an older version, sends none, and one of an older
	// version ignores it (an unknown JSON field). One longer than
	// maxTraceparent is dropped, not refused.
	Trace string `json:"tp,omitempty"`
}

// Bounds of what a peer may send in one frame.
const (
	maxFrame        = 4 << 20
	maxFrameEvents  = 4096
	maxPayload      = 64 << 10
	maxNameLen      = 64
	maxConversation = 64
	maxTraceparent  = 128
)

// MaxSignal is the largest signal a link carries; a peer that sends a
// larger one has its link closed.
const MaxSignal = maxPayload

// ErrBadFrame is returned for a frame that does not decode or breaks the
// bounds; the link that sent it is closed.
var ErrBadFrame = errors.New("bad replication frame")

func encodeFrame(f frame) ([]byte, error) { return json.Marshal(f) }

// decodeFrame parses and checks a frame from a peer.
func decodeFrame(b []byte) (frame, error) {
	var f frame
	if len(b) > maxFrame {
		return f, fmt.Errorf("%w: %d bytes", ErrBadFrame, len(b))
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return f, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	if len(f.Trace) > maxTraceparent || f.Type != frameEvents {
		f.Trace = ""
	}
	switch f.Type {
	case frameEvents:
		if len(f.Events) == 0 || len(f.Events) > maxFrameEvents {
			return f, fmt.Errorf("%w: %d events", ErrBadFrame, len(f.Events))
		}
		for _, e := range f.Events {
			if err := e.check(); err != nil {
				return f, err
			}
		}
	case frameAck:
		if f.ID == 0 || len(f.Events) > 0 || len(f.Gaps) > maxFrameEvents {
			return f, fmt.Errorf("%w: ack without an id, with events or too many gaps", ErrBadFrame)
		}
		for _, g := range f.Gaps {
			if !ident.ValidOrigin(g.Origin) || g.Next == 0 || g.Workspace == "" || g.Conversation == "" {
				return f, fmt.Errorf("%w: gap %+v", ErrBadFrame, g)
			}
		}
	case frameSignal:
		if len(f.Signal) == 0 || len(f.Signal) > maxPayload || f.ID != 0 || len(f.Events) > 0 {
			return f, fmt.Errorf("%w: signal of %d bytes", ErrBadFrame, len(f.Signal))
		}
	default:
		return f, fmt.Errorf("%w: type %q", ErrBadFrame, f.Type)
	}
	return f, nil
}

func (e Event) check() error {
	switch {
	case e.Workspace == "" || len(e.Workspace) > maxNameLen:
		return fmt.Errorf("%w: workspace %q", ErrBadFrame, e.Workspace)
	case e.Conversation == "" || len(e.Conversation) > maxConversation:
		return fmt.Errorf("%w: conversation %q", ErrBadFrame, e.Conversation)
	case !ident.ValidOrigin(e.Origin):
		return fmt.Errorf("%w: origin %q", ErrBadFrame, e.Origin)
	case e.OSeq == 0:
		return fmt.Errorf("%w: oseq 0", ErrBadFrame)
	case len(e.Payload) == 0 || len(e.Payload) > maxPayload:
		return fmt.Errorf("%w: payload of %d bytes", ErrBadFrame, len(e.Payload))
	}
	return nil
}
