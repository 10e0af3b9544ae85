package gateway

import "fmt"

// wireError is an error that goes to the client as an error frame. close is
// the close code when the error ends the connection, 0 when it does not.
type wireError struct {
	Code    string
	Message string
	close   int
	// relayed: the error frame came from the node a relay serves the
	// connection through; only the close remains to be sent.
	relayed bool
	// cause is the internal error behind an unavailable one, for the log;
	// the client sees only the message.
	cause error
	// retry is, for rate_limited, the milliseconds until the refused frame
	// would be taken (the error frame's retry_ms); 0: not said.
	retry int64
}

func (e *wireError) Error() string { return e.Code + ": " + e.Message }

func errf(code, format string, args ...any) *wireError {
	return &wireError{Code: code, Message: fmt.Sprintf(format, args...)}
}

func fatalf(code string, closeCode int, format string, args ...any) *wireError {
	return &wireError{Code: code, Message: fmt.Sprintf(format, args...), close: closeCode}
}
