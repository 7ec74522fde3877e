from .sekd import SEKDNet

__all__ = ["SEKDNet"]
