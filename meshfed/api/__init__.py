"""Reusable aiohttp plumbing for the control planes' REST API (global and zone)."""
