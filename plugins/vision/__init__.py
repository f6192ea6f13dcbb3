"""The vision domain plugin: image tasks (image classification; object detection comes later)."""
