"""FaceGate: office face-entry access control."""
