"""Image to faces: decode, detect, landmarks, align, encode.

Pure computation over arrays and ONNX Runtime sessions: nothing here knows HTTP or SQL.
"""
