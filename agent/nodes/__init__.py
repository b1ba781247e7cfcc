"""The graph's nodes, one module each: ``async def node(state, deps, note) -> update``.

Each takes the run's :class:`~imgrag.agent.state.AgentState`, the :class:`~imgrag.agent.state.Deps`
it may call, and where to note its decisions; it returns the state keys it changes and never
mutates what it was given, so it can be called alone on a hand-built state."""

from .answer import answer
from .finalize import finalize
from .inspect import inspect
from .plan import plan
from .retrieve import retrieve
from .self_check import self_check

__all__ = ["answer", "finalize", "inspect", "plan", "retrieve", "self_check"]
