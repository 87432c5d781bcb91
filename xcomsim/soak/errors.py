"""The soak's one error: a problem with its input or its machine, said in one line."""

from __future__ import annotations

from xcomsim.errors import XcomsimError


class SoakError(XcomsimError):
    """The deployment cannot be started or driven; the message names what and, where known, the fix."""
