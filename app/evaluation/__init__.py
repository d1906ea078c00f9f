"""Accuracy measurement: pure functions over distances and labels (no images, no HTTP, no SQL)."""
