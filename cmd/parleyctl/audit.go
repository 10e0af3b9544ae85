package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"parley/cluster/schema"
)

func init() {
	register(command{"audit", "[-workspace WS | -cluster] [-since TIME] [-actor WHO] [-action ACTION] [-limit N] [-before SEQ] [-pages N]",
		"show the audit log, newest first: who did what, when, from where, and how it ended (a workspace's needs its admin; the rest the cluster admin token)", auditCmd})
}

// auditPage is a page of the audit log (docs/api.md, "Audit log").
type auditPage struct {
	Entries []schema.AuditEntry `json:"entries"`
	Next    uint64              `json:"next"`
	Dropped uint64              `json:"dropped"`
}

func auditCmd(e *env, args []string) error {
	f := e.flags("audit")
	ws := f.String("workspace", "", "only this workspace's log (its admins may read it)")
	own := f.Bool("cluster", false, "only the cluster's own log (plans, membership, sign-ins to no known workspace)")
	since := f.String("since", "", "only entries made at or after this RFC 3339 time, or this long ago (like 24h)")
	actor := f.String("actor", "", "only entries of this actor: an operator or key ID, a sign-in's email, or a kind (root, operator, key, anonymous)")
	action := f.String("action", "", "only entries of this action (create_key, delete_workspace, request, ...) or route (\"POST /v1/login\")")
	limit := f.Int("limit", 50, "entries a page, 1 to 1000")
	before := f.Uint64("before", 0, "start below this seq (the next page's cursor the previous one printed)")
	pages := f.Int("pages", 1, "pages to fetch, following the cursor (0: all)")
	if _, err := f.parse(args, 0, 0); err != nil {
		return err
	}
	if *ws != "" && *own {
		return usagef("-workspace and -cluster: give one")
	}
	if *ws != "" {
		if err := checkID("workspace", *ws); err != nil {
			return err
		}
	}
	if *limit < 1 || *limit > 1000 || *pages < 0 {
		return usagef("-limit: 1 to 1000; -pages: 0 or more")
	}
	q := url.Values{"limit": {strconv.Itoa(*limit)}}
	if *since != "" {
		t, err := sinceTime(*since)
		if err != nil {
			return err
		}
		q.Set("since", t)
	}
	if *actor != "" {
		q.Set("actor", *actor)
	}
	if *action != "" {
		q.Set("action", *action)
	}
	path := "/v1/admin/audit"
	switch {
	case *ws != "":
		path = wsPath(*ws, "audit")
	case *own:
		q.Set("workspace", "-")
	}
	cursor := *before
	for n := 0; *pages == 0 || n < *pages; n++ {
		if cursor > 0 {
			q.Set("before", strconv.FormatUint(cursor, 10))
		}
		var page auditPage
		raw, err := e.call(http.MethodGet, path, q, nil, &page, true)
		if err != nil {
			return err
		}
		if err := e.out(raw, func() { printAudit(e, page, n == 0) }); err != nil {
			return err
		}
		cursor = page.Next
		if cursor == 0 {
			return nil
		}
	}
	if !e.g.json {
		fmt.Fprintf(e.stdout, "more: add -before %d\n", cursor)
	}
	return nil
}

func printAudit(e *env, page auditPage, first bool) {
	if first && page.Dropped > 0 {
		fmt.Fprintf(e.stdout, "note: %d older entries were dropped for the log's bounds\n", page.Dropped)
	}
	var rows [][]string
	for _, x := range page.Entries {
		who := x.Actor.Kind
		switch {
		case x.Actor.ID != "":
			who += " " + x.Actor.Workspace + "/" + x.Actor.ID
		case x.Actor.Email != "":
			who += " " + x.Actor.Email
		}
		out := x.Outcome
		if x.Count > 1 {
			out += fmt.Sprintf(" ×%d", x.Count)
		}
		rows = append(rows, []string{strconv.FormatUint(x.Seq, 10), x.At.UTC().Format(time.RFC3339), who, x.Address, x.Action, x.Workspace, x.Target, strings.Join(x.Fields, ","), out, x.Route})
	}
	table(e.stdout, []string{"SEQ", "AT", "ACTOR", "ADDRESS", "ACTION", "WORKSPACE", "TARGET", "FIELDS", "OUTCOME", "ROUTE"}, rows)
}

// sinceTime reads a -since flag: an RFC 3339 time, or a duration ago
// (like 24h); it returns the time in RFC 3339, UTC.
func sinceTime(v string) (string, error) {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		d, derr := time.ParseDuration(v)
		if derr != nil || d < 0 {
			return "", usagef("-since %q: want an RFC 3339 time or a duration like 24h", v)
		}
		t = time.Now().Add(-d)
	}
	return t.UTC().Format(time.RFC3339), nil
}
