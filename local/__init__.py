"""Local tooling: an embedded PostgreSQL, an OpenAI-compatible stub, and the runner behind `make dev`.

Nothing here is deployed; the Lambda functions never import this package.
"""
