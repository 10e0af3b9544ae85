//go:build race

package gateway

// raceEnabled: built with -race, under which sync.Pool drops what it is
// given at random, so what comes from a pool may be allocated anew.
const raceEnabled = true
