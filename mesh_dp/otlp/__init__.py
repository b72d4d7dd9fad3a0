"""OpenTelemetry exporters of the sidecar (issue 18): MeshAccessLog's `openTelemetry` backend
(logs.py) and MeshMetric's `OpenTelemetry` push (metrics_push.py), over OTLP/HTTP or OTLP/gRPC
(transport.py). Nothing here imports protobuf at import time: encode.py, the one module that
does, is imported by an exporter's thread when it first sends (decision 142)."""
