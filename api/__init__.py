"""The HTTP API (aiohttp): health, metrics, OpenAPI and the AMI endpoints."""
