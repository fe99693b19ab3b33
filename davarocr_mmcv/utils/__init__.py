from .progressbar import DavarProgressBar

__all__ = ['DavarProgressBar']
