//go:build race

package node

// raceDetector: the tests run under the race detector, which slows this code several times over;
// a few assertions about timing are enforced only without it (each says so).
const raceDetector = true
