"""pydantic models of every resource body (decision 71): imported by the control planes, the
CLI and tests through the descriptors, never by the proxies."""
