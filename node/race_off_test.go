//go:build !race

package node

// raceDetector: the tests run under the race detector (race_on_test.go).
const raceDetector = false
