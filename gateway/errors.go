package gateway

import "fmt"

// Wire error codes: the one place they are defined. docs/protocol.md
// documents each; a test checks that the two agree.
const (
	CodeBadFrame           = "bad_frame"
	CodeTooLarge           = "too_large"
	CodeUnknownType        = "unknown_type"
	CodeVersionUnsupported = "version_unsupported"
	CodeBadRequest         = "bad_request"
	CodeUnauthenticated    = "unauthenticated"
	CodeAuthFailed         = "auth_failed"
	CodeForbidden          = "forbidden"
	CodeNotFound           = "not_found"
	CodeRateLimited        = "rate_limited"
	CodeOverLimit          = "over_limit"
	CodeSlowConsumer       = "slow_consumer"
	CodeUnavailable        = "unavailable"
	CodeInternal           = "internal"
)

// Codes lists every wire error code.
var Codes = []string{
	CodeBadFrame, CodeTooLarge, CodeUnknownType, CodeVersionUnsupported,
	CodeBadRequest, CodeUnauthenticated, CodeAuthFailed, CodeForbidden,
	CodeNotFound, CodeRateLimited, CodeOverLimit, CodeSlowConsumer, CodeUnavailable, CodeInternal,
}

// WebSocket close codes for the codes that end a connection.
const (
	closeTooLarge     = 1009
	closeRestart      = 1012
	closeBadVersion   = 4400
	closeUnauthentic  = 4401
	closeAuthFailed   = 4403
	closeSlowConsumer = 4408
	closeRateLimited  = 4429
)

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
}

func (e *wireError) Error() string { return e.Code + ": " + e.Message }

func errf(code, format string, args ...any) *wireError {
	return &wireError{Code: code, Message: fmt.Sprintf(format, args...)}
}

func fatalf(code string, closeCode int, format string, args ...any) *wireError {
	return &wireError{Code: code, Message: fmt.Sprintf(format, args...), close: closeCode}
}
