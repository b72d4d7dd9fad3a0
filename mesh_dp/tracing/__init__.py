"""MeshTrace in the sidecar (issue 18): context propagation and sampling (`context.py`,
pure), the per-request hook of the HTTP pipeline (`tracer.py`), and the exporters, run off
the data path (`export.py`; the wire formats `zipkin.py`, `otlp.py`, `datadog.py` are
imported only when a config names their backend)."""
