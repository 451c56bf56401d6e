"""Interoperability tests: clients written in other languages against a real server."""
