package gateway

// HoldSnapshotBuilds takes every snapshot build slot of g until release
// is called, so tests can see requests wait for one (and leave). It waits
// for builds running now to finish.
func HoldSnapshotBuilds(g *Gateway) (release func()) {
	slots := g.buildSlots
	for range cap(slots) {
		slots <- struct{}{}
	}
	return func() {
		for range cap(slots) {
			<-slots
		}
	}
}
