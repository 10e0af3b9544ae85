package main

import (
	"net/mail"
	"regexp"
	"strings"

	"parley/cluster/schema"
	"parley/ident"
)

// Arguments are checked here before anything is sent, with the control
// plane's own rules where it exports them (the commands' Validate methods),
// so a typo is a usage error (exit 2) with the rule in the message.

var rePeriod = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])$`)

func checkID(what, id string) error {
	if !ident.ValidID(id) {
		return usagef("%s ID %q: want 1 to 64 of a-z 0-9 _ -", what, id)
	}
	return nil
}

func checkPeriod(p string) error {
	if p != "" && !rePeriod.MatchString(p) {
		return usagef("period %q: want YYYY-MM, like 2026-11", p)
	}
	return nil
}

func checkEmail(e string) error {
	a, err := mail.ParseAddress(e)
	if err != nil || a.Address != e || a.Name != "" || len(e) > 254 {
		return usagef("email %q: want a bare address, like ada@example.com", e)
	}
	return nil
}

func checkPassword(p string) error {
	if len(p) < 8 || len(p) > 1024 {
		return usagef("password of %d bytes: want 8 to 1024", len(p))
	}
	return nil
}

// valid runs a control-plane command's Validate as a usage check.
func valid(cmd schema.Command) error {
	if err := cmd.Validate(); err != nil {
		return usagef("%s", strings.TrimPrefix(err.Error(), schema.ErrInvalid.Error()+": "))
	}
	return nil
}

// parseBrands reads -brand id=Name values.
func parseBrands(vals []string) ([]schema.Brand, error) {
	var out []schema.Brand
	for _, v := range vals {
		id, name, ok := strings.Cut(v, "=")
		if !ok || id == "" || name == "" {
			return nil, usagef("brand %q: want ID=Name, like shoes=\"Acme Shoes\"", v)
		}
		out = append(out, schema.Brand{ID: id, Name: name})
	}
	return out, nil
}

// multi is a flag given several times.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }
