"""The door client: camera, stream or file -> bursts -> the service; door outputs.

It runs on the door's machine, so it imports OpenCV, httpx, pydantic and paho-mqtt only: no model
runtime and no server code.
"""
