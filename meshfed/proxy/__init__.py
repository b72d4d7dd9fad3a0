"""What both proxies (mesh-dp and zone-ingress) run on: the control-plane client (`cpclient`)
over a small h2 gRPC client (the sans-io `h2state`, driven by `h2grpc`), the static-config
mode (`static_config`), the admin endpoint (`admin`) with its Prometheus text (`promtext`),
the ClientHello parser (`clienthello`) and the byte pump (`pump`).

Nothing here may import grpcio, cryptography, prometheus_client, aiohttp or PyJWT (a proxy's
memory budget; tests/unit/mesh_dp/test_proxy_imports.py and the import contracts check it).
"""
