package main

import (
	"fmt"
	"net/http"

	"parley/cluster/schema"
	"parley/ident"
)

func init() {
	register(
		command{"assign", "-workspace WS CONVERSATION (OPERATOR | -unassign) [-expect-version N]",
			"give a conversation to an operator if its version is still the expected one (default: the current one, read first)", assign},
		command{"assign show", "-workspace WS CONVERSATION", "show who a conversation is assigned to, and its version", assignShow},
	)
}

type assignment struct {
	schema.Assignment
	Index uint64 `json:"index"`
}

func assign(e *env, args []string) error {
	f := e.flags("assign")
	ws := f.workspaceFlag()
	unassign := f.Bool("unassign", false, "take the conversation from whoever has it")
	expect := f.Uint64("expect-version", 0, "the version the change expects (0: never assigned)")
	pos, err := f.parse(args, 1, 2)
	if err != nil {
		return err
	}
	if err := needWorkspace(*ws); err != nil {
		return err
	}
	op := ""
	switch {
	case len(pos) == 2 && *unassign:
		return usagef("an operator and -unassign: give one")
	case len(pos) == 2:
		op = pos[1]
	case !*unassign:
		return usagef("give the operator to assign to, or -unassign")
	}
	conv := pos[0]
	if err := valid(schema.Assign{Workspace: *ws, Conversation: conv, Operator: op}); err != nil {
		return err
	}
	if !f.given("expect-version") {
		var cur schema.Assignment
		if _, err := e.call(http.MethodGet, wsPath(*ws, "assignments", conv), nil, nil, &cur, true); err != nil {
			return err
		}
		*expect = cur.Version
	}
	var a assignment
	raw, err := e.call(http.MethodPut, wsPath(*ws, "assignments", conv), nil, map[string]any{"operator": op, "expect_version": *expect}, &a, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		fields(e.stdout, "conversation", a.Conversation, "operator", orNone(a.Operator, "unassigned"),
			"version", fmt.Sprint(a.Version), "log index", fmt.Sprint(a.Index))
	})
}

func assignShow(e *env, args []string) error {
	ws, conv, err := wsAndID(e, "assign show", "conversation", args)
	if err != nil {
		return err
	}
	if !ident.ValidConversationRef(conv) {
		return usagef("conversation %q: want 1 to 64 of A-Z a-z 0-9 _ -", conv)
	}
	var a schema.Assignment
	raw, err := e.call(http.MethodGet, wsPath(ws, "assignments", conv), nil, nil, &a, true)
	if err != nil {
		return err
	}
	return e.out(raw, func() {
		fields(e.stdout, "conversation", a.Conversation, "operator", orNone(a.Operator, "unassigned"), "version", fmt.Sprint(a.Version))
	})
}
