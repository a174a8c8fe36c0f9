"""SpendBrake: the CLI, config loading and wiring, plus the producer SDK (``spendbrake.sdk``)."""

__version__ = "0.1.0"

__all__ = ["__version__"]
