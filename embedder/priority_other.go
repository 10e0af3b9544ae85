//go:build !linux

package embedder

import "errors"

// lowerThreadPriority is Linux-only; elsewhere the worker relies on its duty
// cycle alone.
func lowerThreadPriority() error {
	return errors.New("thread priority is only lowered on Linux")
}
