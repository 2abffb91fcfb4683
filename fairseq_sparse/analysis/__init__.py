"""Head analysis after Kovaleva et al. 2019: attention maps, head/layer disabling, pattern classes,
special-token attention and drift; analysis functions return numbers, plots draws them, report_* write them."""

from .loading import AnalysisSetup, load_for_analysis

__all__ = ["AnalysisSetup", "load_for_analysis"]
