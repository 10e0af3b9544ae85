package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"parley/cluster/schema"
)

func init() {
	register(
		command{"usage", "-workspace WS [-period YYYY-MM]", "show a workspace's usage against its plan (default: this month)", usageCmd},
		command{"billing list", "-workspace WS", "list a workspace's billing events", billingList},
		command{"billing record", "-workspace WS -key IDEMPOTENCY_KEY -kind KIND -amount MINOR_UNITS [-currency EUR] [-period YYYY-MM] [-note TEXT]",
			"record a billing event, exactly once per idempotency key (a retry answers duplicate)", billingRecord},
		command{"plans list", "", "list the plans and their limits", plansList},
		command{"plans set", "NAME [-seats N] [-conversations N] [-messages N]",
			"create or change a plan (0: unlimited; an existing plan keeps the limits not given)", plansSet},
	)
}

func usageCmd(e *env, args []string) error {
	f := e.flags("usage")
	ws := f.workspaceFlag()
	period := f.String("period", "", "month, YYYY-MM (default: this month, UTC)")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	if err := checkPeriod(*period); err != nil {
		return err
	}
	q := url.Values{}
	if *period != "" {
		q.Set("period", *period)
	}
	var rep struct {
		Usage     schema.Usage `json:"usage"`
		Plan      schema.Plan  `json:"plan"`
		OverLimit string       `json:"over_limit"`
	}
	raw, err := e.call(http.MethodGet, wsPath(*ws, "usage"), q, nil, &rep, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		u, p := rep.Usage, rep.Plan
		fields(e.stdout,
			"workspace", u.Workspace,
			"period", u.Period,
			"plan", p.Name,
			"conversations", fmt.Sprintf("%d of %s", u.Conversations, limit(p.ConversationsPerMonth)),
			"messages", fmt.Sprintf("%d of %s", u.Messages, limit(p.MessagesPerMonth)),
			"seats", limit(p.Seats),
			"reports", fmt.Sprint(u.Reports),
			"over limit", orNone(rep.OverLimit, "no"),
		)
	})
}

func limit(n int64) string {
	if n == 0 {
		return "unlimited"
	}
	return strconv.FormatInt(n, 10)
}

func billingList(e *env, args []string) error {
	f := e.flags("billing list")
	ws := f.workspaceFlag()
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	var evs []schema.BillingEvent
	raw, err := e.call(http.MethodGet, wsPath(*ws, "billing"), nil, nil, &evs, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		var rows [][]string
		for _, ev := range evs {
			rows = append(rows, []string{fmt.Sprint(ev.Index), ev.Period, ev.Kind, fmt.Sprint(ev.Amount), ev.Currency, ev.IdempotencyKey, ev.Note, day(ev.At)})
		}
		table(e.stdout, []string{"INDEX", "PERIOD", "KIND", "AMOUNT", "CURRENCY", "KEY", "NOTE", "AT"}, rows)
	})
}

func billingRecord(e *env, args []string) error {
	f := e.flags("billing record")
	ws := f.workspaceFlag()
	key := f.String("key", "", "idempotency key: the same key never applies twice")
	kind := f.String("kind", "", "charge, credit, plan_change, ... (a-z _)")
	amount := f.Int64("amount", 0, "amount in the currency's minor unit (cents); negative for a credit")
	currency := f.String("currency", "", "ISO 4217 code, like EUR")
	period := f.String("period", "", "YYYY-MM (default: this month, UTC)")
	note := f.String("note", "", "free text")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	if *key == "" || *kind == "" || !f.given("amount") {
		return usagef("-key, -kind and -amount are required")
	}
	ev := schema.BillingEvent{IdempotencyKey: *key, Workspace: *ws, Period: *period, Kind: *kind, Amount: *amount, Currency: *currency, Note: *note, At: time.Now()}
	if ev.Period == "" {
		ev.Period = time.Now().UTC().Format("2006-01")
	}
	if err := valid(schema.RecordBillingEvent{Event: ev}); err != nil {
		return err
	}
	body := map[string]any{"idempotency_key": *key, "kind": *kind, "amount": *amount}
	for k, v := range map[string]string{"currency": *currency, "period": *period, "note": *note} {
		if v != "" {
			body[k] = v
		}
	}
	var rep struct {
		Result schema.Result `json:"result"`
	}
	raw, err := e.call(http.MethodPost, wsPath(*ws, "billing"), nil, body, &rep, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		if rep.Result.Duplicate {
			fmt.Fprintf(e.stdout, "duplicate: %s was already recorded at log index %d; nothing changed\n", *key, rep.Result.Index)
			return
		}
		fmt.Fprintf(e.stdout, "recorded %s at log index %d\n", *key, rep.Result.Index)
	})
}

func plansList(e *env, args []string) error {
	if _, err := e.flags("plans list").parse(args, 0, 0); err != nil {
		return err
	}
	var plans []schema.Plan
	raw, err := e.call(http.MethodGet, "/v1/admin/plans", nil, nil, &plans, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		var rows [][]string
		for _, p := range plans {
			rows = append(rows, []string{p.Name, limit(p.Seats), limit(p.ConversationsPerMonth), limit(p.MessagesPerMonth)})
		}
		table(e.stdout, []string{"PLAN", "SEATS", "CONVERSATIONS/MONTH", "MESSAGES/MONTH"}, rows)
	})
}

func plansSet(e *env, args []string) error {
	f := e.flags("plans set")
	seats := f.Int64("seats", 0, "operators (0: unlimited)")
	convs := f.Int64("conversations", 0, "conversations a month (0: unlimited)")
	msgs := f.Int64("messages", 0, "messages a month (0: unlimited)")
	pos, err := f.parse(args, 1, 1)
	if err != nil {
		return err
	}
	p := schema.Plan{Name: pos[0]}
	if err := valid(schema.SetPlan{Plan: p}); err != nil {
		return err
	}
	// An existing plan keeps the limits not given: PUT replaces the plan.
	var plans []schema.Plan
	if _, err := e.call(http.MethodGet, "/v1/admin/plans", nil, nil, &plans, true); err != nil {
		return err
	}
	exists := false
	for _, q := range plans {
		if q.Name == p.Name {
			p, exists = q, true
		}
	}
	if !exists && !(f.given("seats") && f.given("conversations") && f.given("messages")) {
		return usagef("plan %s is new: give -seats, -conversations and -messages (0 is unlimited)", p.Name)
	}
	if f.given("seats") {
		p.Seats = *seats
	}
	if f.given("conversations") {
		p.ConversationsPerMonth = *convs
	}
	if f.given("messages") {
		p.MessagesPerMonth = *msgs
	}
	if err := valid(schema.SetPlan{Plan: p}); err != nil {
		return err
	}
	var got schema.Plan
	raw, err := e.call(http.MethodPut, "/v1/admin/plans/"+url.PathEscape(p.Name), nil, p, &got, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		table(e.stdout, []string{"PLAN", "SEATS", "CONVERSATIONS/MONTH", "MESSAGES/MONTH"},
			[][]string{{got.Name, limit(got.Seats), limit(got.ConversationsPerMonth), limit(got.MessagesPerMonth)}})
	})
}
