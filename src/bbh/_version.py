"""The package version, in a core module of its own so that every layer may read it without
importing the ``bbh`` facade (which imports the layers)."""

__version__ = "0.2.0"
