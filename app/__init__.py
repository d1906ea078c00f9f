"""FaceGate: office face-entry access control."""

__version__ = "0.1.0"
