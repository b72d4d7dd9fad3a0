"""The REST API options both control planes declare, each a type alias a settings field is
annotated with (`api_address: ApiAddress`), so they spell, default and document them alike."""

from __future__ import annotations

from typing import Annotated

from meshfed.api.body import DEFAULT_MAX_BODY_BYTES
from meshfed.config import Address, Option, parse_address, parse_size

ApiAddress = Annotated[
    Address,
    Option(
        parse_address,
        "127.0.0.1:5681",
        "Where the REST API listens (HOST:PORT; port 0 picks a free one)",
        metavar="HOST:PORT",
    ),
]
MaxBodyBytes = Annotated[
    int,
    Option(
        parse_size,
        DEFAULT_MAX_BODY_BYTES,
        "Largest accepted request body, in bytes (suffixes KiB, MiB allowed); larger gets 413",
        metavar="SIZE",
    ),
]
