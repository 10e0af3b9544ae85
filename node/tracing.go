package node

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"parley/store"
	"parley/tracing"
)

// Tracing (docs/operations.md, *Tracing*): off unless -otlp-endpoint names
// an OTLP/HTTP collector.

func tracingFlags(fs *flag.FlagSet, c *Config) {
	fs.StringVar(&c.OTLPEndpoint, "otlp-endpoint", envFor("otlp-endpoint", ""), "OTLP/HTTP collector URL to export traces to, http:// or https:// (no path: /v1/traces); empty: tracing off")
	fs.Float64Var(&c.OTLPSampleRatio, "otlp-sample-ratio", 1, "fraction of the traces this node starts that are recorded, at most 1; 0 counts as 1 (a trace a peer recorded is recorded here too)")
}

func (c *Config) validateTracing() []error {
	var errs []error
	if c.OTLPEndpoint != "" {
		if _, err := tracing.CheckEndpoint(c.OTLPEndpoint); err != nil {
			errs = append(errs, fmt.Errorf("otlp-endpoint: %w", err))
		}
	}
	if c.OTLPSampleRatio < 0 || c.OTLPSampleRatio > 1 {
		errs = append(errs, errors.New("otlp-sample-ratio: between 0 and 1"))
	}
	return errs
}

// openTracing starts the node's tracer (nil when off) and adds the flush of
// its exporter to what closes the node: the spans of the last moments are
// sent, for at most 5 s, after everything but the store closed.
func (n *Node) openTracing() error {
	if n.cfg.tracerProvider != nil {
		n.tracer = tracing.New(n.cfg.tracerProvider)
		return nil
	}
	tr, shutdown, err := tracing.Start(tracing.Config{
		Endpoint:    n.cfg.OTLPEndpoint,
		SampleRatio: n.cfg.OTLPSampleRatio,
		Node:        n.cfg.NodeID,
		Region:      n.cfg.Region,
		Logger:      n.log,
	})
	if err != nil {
		return err
	}
	n.tracer = tr
	if tr.On() {
		n.opened.add("tracing", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			return shutdown(ctx)
		})
	}
	return nil
}

// publishSpan is the span of publishing one event of a traced change or
// frame (store.Event.Trace): parley.fanout for this node's own events
// (its subscribers, then a parley.replicate span per peer beneath it),
// parley.deliver for a peer's (its subscribers here). Events published
// together (read receipts) carry no trace.
func (n *Node) publishSpan(evs []store.Event) (context.Context, func()) {
	if !n.tracer.On() || len(evs) != 1 || evs[0].Trace == nil {
		return nil, nil
	}
	e := &evs[0]
	name := "parley.deliver"
	if e.Stamp.Origin == n.cfg.NodeID {
		name = "parley.fanout"
	}
	ctx, span := n.tracer.Child(e.Trace, name)
	if !span.IsRecording() {
		return nil, nil
	}
	span.SetAttributes(tracing.Workspace(e.Workspace), tracing.Seq(e.Seq), tracing.Origin(e.Stamp.Origin), tracing.OSeq(e.Stamp.OSeq),
		tracing.Bytes(len(e.Message.Body)))
	return ctx, func() { span.End() }
}
