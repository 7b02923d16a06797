"""Oracles the tests check analyzers against: networks with planted structure (not shipped in the package)."""
