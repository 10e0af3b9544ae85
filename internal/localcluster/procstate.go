package localcluster

import (
	"errors"
	"os"
	"strconv"
	"strings"
)

// ProcState returns the state letter of a process from /proc/<pid>/stat:
// R running, S sleeping, T stopped, Z zombie, …
func ProcState(pid int) (byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, errors.New("proc stat: no state")
	}
	return s[i+2], nil
}
