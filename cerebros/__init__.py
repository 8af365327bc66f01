"""Cerebros-style neural architecture search in numpy: the search space and the network it trains."""
from .network import CerebrosNetwork
from .space import Candidate, SearchSpace, Unit

__version__ = "0.1.0"
__all__ = ["Candidate", "CerebrosNetwork", "SearchSpace", "Unit", "__version__"]
