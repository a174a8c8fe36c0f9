"""Online detectors over rolled-up spend series (see the detectors issue)."""

__all__: list[str] = []
