//go:build !race

package gateway

// raceEnabled: built with -race (race_on_test.go).
const raceEnabled = false
