"""High-throughput phonon pipeline: JARVIS structures -> ALIGNN phonon DOS -> thermal properties."""

__version__ = "0.1.0"
