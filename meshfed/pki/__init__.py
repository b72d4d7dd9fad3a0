"""Mesh PKI: the builtin mesh CA (`ca`), SPIFFE leaf certificates (`leaf`), SPIFFE identities
(`spiffe`), mTLS contexts (`tls`) and the proxies' small certificate reader (`der`).

Nothing is imported here: `ca` and `leaf` load `cryptography`, which the proxies (that need
only `spiffe`, `tls` and `der`) must not pay for. Import the submodule you need.
"""
