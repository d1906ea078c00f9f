"""Build-time model tooling: dlib readers and converters to ONNX / npz.

Never imported by the request path of ``app``; ``facegate models build`` drives it.
"""
