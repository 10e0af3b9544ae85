package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"parley/cluster/schema"
)

func init() {
	register(
		command{"webhook create", "-workspace WS -url URL -events TYPE,TYPE…",
			"add a webhook endpoint; prints its signing secret once (events: " + strings.Join(schema.WebhookEventTypes, ", ") + ")", webhookCreate},
		command{"webhook list", "-workspace WS", "list a workspace's webhook endpoints", webhookList},
		command{"webhook rotate", "-workspace WS -overlap DURATION WEBHOOK_ID",
			"give an endpoint a new signing secret, printed once; the old one signs beside it for the overlap", webhookRotate},
		command{"webhook delete", "-workspace WS WEBHOOK_ID", "remove an endpoint with its dead letters", webhookDelete},
		command{"webhook dead-letters", "-workspace WS WEBHOOK_ID", "list the events given up on after the retry period", webhookDeadLetters},
		command{"webhook redeliver", "-workspace WS [-event EVENT_ID,…] WEBHOOK_ID",
			"send dead letters again (all of them, or those named)", webhookRedeliver},
	)
}

func webhookCreate(e *env, args []string) error {
	f := e.flags("webhook create")
	ws := f.workspaceFlag()
	u := f.String("url", "", "the endpoint's URL (http or https)")
	evs := f.String("events", "", "event types it receives, comma-separated")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	events := splitComma(*evs)
	if err := firstUsage(schema.CheckWebhookURL(*u), schema.CheckWebhookEvents(events)); err != nil {
		return err
	}
	var rep struct {
		Webhook schema.Webhook `json:"webhook"`
		Secret  string         `json:"secret"`
	}
	raw, err := e.call(http.MethodPost, wsPath(*ws, "webhooks"), nil, map[string]any{"url": *u, "events": events}, &rep, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		fields(e.stdout, "id", rep.Webhook.ID, "url", rep.Webhook.URL, "events", strings.Join(rep.Webhook.Events, ","), "secret", rep.Secret)
		fmt.Fprintln(e.stdout, "The secret is shown once: verify each delivery's Parley-Signature with it (docs/api.md, Webhooks).")
	})
}

func webhookList(e *env, args []string) error {
	f := e.flags("webhook list")
	ws := f.workspaceFlag()
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	var hooks []schema.Webhook
	raw, err := e.call(http.MethodGet, wsPath(*ws, "webhooks"), nil, nil, &hooks, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		var rows [][]string
		for _, h := range hooks {
			rotated := "never"
			if !h.Rotated.IsZero() {
				rotated = h.Rotated.UTC().Format(time.RFC3339)
			}
			rows = append(rows, []string{h.ID, h.URL, strings.Join(h.Events, ","), rotated, strconv.Itoa(h.Dead)})
		}
		table(e.stdout, []string{"ID", "URL", "EVENTS", "ROTATED", "DEAD"}, rows)
	})
}

func webhookRotate(e *env, args []string) error {
	f := e.flags("webhook rotate")
	ws := f.workspaceFlag()
	overlap := f.Duration("overlap", -1, "how long the old secret keeps signing beside the new one (0s: it stops at once)")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := firstUsage(needWorkspace(*ws), schema.CheckWebhookID(pos[0])); err != nil {
		return err
	}
	if !f.given("overlap") {
		return usagef("-overlap is required: how long the old secret keeps signing (\"24h\", \"0s\")")
	}
	if *overlap < 0 || *overlap > schema.MaxSecretOverlap {
		return usagef("-overlap %v: want 0s to %v", *overlap, schema.MaxSecretOverlap)
	}
	var rep struct {
		Secret        string    `json:"secret"`
		PreviousUntil time.Time `json:"previous_valid_until"`
	}
	raw, err := e.call(http.MethodPost, wsPath(*ws, "webhooks", pos[0], "rotate"), nil, map[string]any{"overlap": overlap.String()}, &rep, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		fields(e.stdout, "id", pos[0], "secret", rep.Secret, "old secret until", rep.PreviousUntil.UTC().Format(time.RFC3339))
		fmt.Fprintln(e.stdout, "Shown once. Until then each delivery carries a signature by each secret.")
	})
}

func webhookDelete(e *env, args []string) error {
	ws, id, err := wsAndID(e, "webhook delete", "webhook", args)
	if err != nil {
		return err
	}
	raw, err := e.call(http.MethodDelete, wsPath(ws, "webhooks", id), nil, nil, nil, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() { fmt.Fprintf(e.stdout, "webhook %s deleted\n", id) })
}

func webhookDeadLetters(e *env, args []string) error {
	ws, id, err := wsAndID(e, "webhook dead-letters", "webhook", args)
	if err != nil {
		return err
	}
	var rep struct {
		Dead    []schema.DeadLetter `json:"dead_letters"`
		Dropped uint64              `json:"dropped"`
	}
	raw, err := e.call(http.MethodGet, wsPath(ws, "webhooks", id, "dead-letters"), nil, nil, &rep, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		var rows [][]string
		for _, d := range rep.Dead {
			state := "dead"
			if d.Redeliver {
				state = "redelivering"
			}
			rows = append(rows, []string{d.EventID, d.Type, d.Conversation, d.Dead.UTC().Format(time.RFC3339), strconv.Itoa(d.Attempts), state, d.LastError})
		}
		table(e.stdout, []string{"EVENT", "TYPE", "CONVERSATION", "DEAD", "ATTEMPTS", "STATE", "LAST ERROR"}, rows)
		if rep.Dropped > 0 {
			fmt.Fprintf(e.stdout, "%d older dead letters were dropped (an endpoint keeps %d)\n", rep.Dropped, schema.MaxDeadLetters)
		}
	})
}

func webhookRedeliver(e *env, args []string) error {
	f := e.flags("webhook redeliver")
	ws := f.workspaceFlag()
	evs := f.String("event", "", "event IDs to send again, comma-separated (default: every dead letter)")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	cmd := schema.RedeliverWebhook{Workspace: *ws, Webhook: pos[0], EventIDs: splitComma(*evs)}
	if err := firstUsage(needWorkspace(*ws), valid(cmd)); err != nil {
		return err
	}
	raw, err := e.call(http.MethodPost, wsPath(*ws, "webhooks", pos[0], "redeliver"), nil, map[string]any{"event_ids": cmd.EventIDs}, nil, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		fmt.Fprintln(e.stdout, "marked for redelivery: the node sending each conversation sends them within seconds; see webhook dead-letters")
	})
}

func splitComma(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// firstUsage is the first error, as a usage error when it is the schema's
// refusal.
func firstUsage(errs ...error) error {
	for _, err := range errs {
		if err == nil {
			continue
		}
		if _, ok := err.(*usageError); ok {
			return err
		}
		return usagef("%s", strings.TrimPrefix(err.Error(), schema.ErrInvalid.Error()+": "))
	}
	return nil
}
