"""Data-path building blocks: ClientHello parser, DNS-safe SNI names, byte pump."""
