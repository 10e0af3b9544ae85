package schema

import (
	"errors"
	"fmt"
)

// Sentinel errors of this package, which package cluster returns under the
// same names (with the others callers branch on: cluster/errors.go).
var (
	// ErrInvalid: a command or argument failed validation, or a command
	// type is unknown to this binary.
	ErrInvalid = errors.New("invalid")
	// ErrUnauthorized: a password does not match its hash (VerifyPassword).
	ErrUnauthorized = errors.New("unauthorized")
)

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
