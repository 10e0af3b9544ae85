//go:build !linux

package bench

import "syscall"

// nodeProcAttr puts a local node in its own process group.
func nodeProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
