"""fanout: the CLI and composition root (picks the simulator or live exchanges by mode and wires the engine)."""

__version__ = "0.1.0"
