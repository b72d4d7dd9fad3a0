"""HTTP/1.1 in the sidecar, for listeners whose `kuma.io/protocol` is `http`.

Pure modules (no sockets): `parse` (httptools/llhttp wrapped into events), `headers`
(hop-by-hop rules, head serialisation, body framing), `errors` (the sidecar's own
responses), `accesslog`. The asyncio edges: `conn` (one connection as events), `pool`
(idle keep-alive upstream connections), `proxy` (the per-request pipeline).
"""
