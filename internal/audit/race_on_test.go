//go:build race

package audit

// raceEnabled: the race detector slows crypto and the database driver
// several times over, so the largest tests scale down under it.
const raceEnabled = true
