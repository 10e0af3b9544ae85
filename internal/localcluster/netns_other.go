//go:build !linux

package localcluster

import (
	"errors"
	"os"
)

func threadNetNS() string { return "" }

func setns(*os.File) error { return errors.New("network namespaces are Linux's") }
