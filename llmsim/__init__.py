"""The simulated OpenAI-compatible LLM server, for development and tests (docs/simulator.md).

A package of its own: no production module imports it (an import-linter contract in
pyproject.toml); only the `llmsim` management command starts it.
"""
