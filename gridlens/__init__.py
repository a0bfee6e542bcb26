"""GridLens: an AMI (smart-meter) emulator and its ingestion pipeline."""

__version__ = "0.1.0"
