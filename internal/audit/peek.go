package audit

// CheckpointSize reads the tree size of a checkpoint note without
// verifying its signature (CheckCheckpoint and Verify do that), or says
// why the note is not a checkpoint.
func CheckpointSize(note []byte) (uint64, error) {
	cp, err := unverifiedCheckpoint(note)
	if err != nil {
		return 0, err
	}
	return cp.Size, nil
}
