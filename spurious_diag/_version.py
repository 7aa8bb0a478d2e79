"""The package version, in a module of its own so that no module imports the package root back."""

__version__ = "0.1.0"
