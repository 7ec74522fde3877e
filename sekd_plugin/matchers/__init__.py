from .nearest_neighbor import NN_CONFS, match_nearest_neighbor

__all__ = ["NN_CONFS", "match_nearest_neighbor"]
