"""Moved to vp2p_dev/make_workflows.py (the maintainer package); this name forwards there."""
import _repo

_repo.forward(__name__, "vp2p_dev.make_workflows")
