"""What every node class shares: the category and the display name put on the host layer's
errors (host code says what is wrong and the fix; the node says who it is)."""
from __future__ import annotations

import functools

from ..vp2p_core.prompts import PromptError
from ..vp2p_host.checks import InputError, NodeInputError, NodeMissingFileError

CATEGORY = "video-p2p"


def named(display_name: str):
    """Decorator for a node's function: host/core input errors come out as NodeInputError
    '<display name>: <message>'."""
    def wrap(fn):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except NodeInputError:
                raise
            except (InputError, PromptError) as e:
                cls = NodeMissingFileError if isinstance(e, FileNotFoundError) else NodeInputError
                raise cls(f"{display_name}: {e}") from None
        return call
    return wrap
