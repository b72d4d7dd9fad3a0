"""`meshctl up`: a local federation (one global-cp, N zone-cps) supervised by one process.

Pure parts (state file, port choice, command lines, log prefixing, status lines, control
protocol) live in their own modules and are tested directly; `supervisor` is the asyncio edge
that spawns the children, reads their output, polls their APIs and serves the control socket.
"""
