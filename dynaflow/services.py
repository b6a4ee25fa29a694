"""What the layers below ``World`` are given instead of the World itself."""

from __future__ import annotations

from dataclasses import dataclass

from dynaflow.middleware.chains import Chains
from dynaflow.persistence.base import Storage
from dynaflow.types import WorldHandle


@dataclass(eq=False, slots=True)
class Services:
    """The narrow collaborators of the planner, the executor, the operators and the cluster
    code: storage, middleware chains, the world's current id, and the public world handed to
    user code (``Action.world``, suspend handles, signal senders)."""

    world: WorldHandle
    storage: Storage
    chains: Chains
    #: the world's id in the worlds table; a world declared dead goes on under a new one
    id: str
    auto_rescue: bool = True
