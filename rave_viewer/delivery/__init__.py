"""Delivery of .rave streams from any static web host: range loader, rate adaptation, manifest, publish, preview server.

Layering: above the codec (it reads streams only through the container's public parsing), below the viewer
(viewer/remote.py wraps the loader as a ViewSource) and the commands (`rave publish`).
"""
