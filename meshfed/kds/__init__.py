"""KDS: resource sync between the global and the zone control planes.

messages (plain dataclasses) · sender / receiver (the pure sync engine) · insight (per-type
accounting) · naming (directions, names and labels across the boundary) · convert (protobuf
mapping) · stream (the engine over one gRPC stream) · server (the global's endpoint) · client
(a zone's connection).
"""
