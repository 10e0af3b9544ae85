//go:build !linux

package localcluster

import "syscall"

// ProcAttr puts a local node in its own process group.
func ProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
