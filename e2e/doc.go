// Package e2e holds Parley's end-to-end tests: they build the real node
// binary, run it as separate processes on loopback with bbolt files on disk,
// and drive it with real WebSocket clients and a real headless browser.
// It has no non-test code beyond this comment.
package e2e
