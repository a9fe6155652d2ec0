"""Loads every fixture module ``tests/builders/fixtures_*.py`` as a pytest plugin, so each area owns its fixtures."""

import pathlib

pytest_plugins = sorted(
    f"builders.{path.stem}" for path in (pathlib.Path(__file__).parent / "tests" / "builders").glob("fixtures_*.py")
)
