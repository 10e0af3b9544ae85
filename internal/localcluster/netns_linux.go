package localcluster

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// threadNetNS is the file of the calling thread's network namespace.
func threadNetNS() string {
	return fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
}

// setns moves the calling thread into the network namespace of f.
func setns(f *os.File) error {
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}
