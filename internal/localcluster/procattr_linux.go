package localcluster

import "syscall"

// ProcAttr puts a local node in its own process group (a Ctrl-C at the
// terminal reaches the harness, which stops the node in order) and has the
// kernel kill it should the harness die without stopping it.
func ProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
