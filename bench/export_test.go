package bench

// WriteHTMLHook renders a result's HTML report to a file. The report
// package imports this one, so this package's tests cannot call it: the
// external test file report_hook_test.go sets the hook to
// report.WriteRunFile.
var WriteHTMLHook func(path string, r *Result) error
