"""Moved to vp2p_host.routes (route registration is host plumbing); kept for callers of the old place."""
from ..vp2p_host.routes import *  # noqa: F401,F403
from ..vp2p_host.routes import ALIGN, align, register  # noqa: F401
