"""The package version, in one place: read by `blockswap.__version__`, by the run record
(`files.versions`) and by pyproject.toml (`[tool.setuptools.dynamic]`). Lowest layer: imports nothing."""

__version__ = "0.2.0"
