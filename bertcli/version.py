"""The package version, importable by any module without loading the package's API (bertcli/__init__)."""

__version__ = "0.1.0"
