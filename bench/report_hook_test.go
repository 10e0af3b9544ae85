package bench_test

import (
	"parley/bench"
	"parley/bench/report"
)

func init() { bench.WriteHTMLHook = report.WriteRunFile }
