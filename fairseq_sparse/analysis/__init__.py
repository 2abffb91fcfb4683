"""Head analysis after Kovaleva et al. 2019 ("Revealing the Dark Secrets of BERT").

What the heads of a (sparse or dense) RoBERTa/BERT classifier attend to and how much each
matters: attention maps, head/layer disabling, pattern classes, special-token attention,
drift between two checkpoints, and the sparsity of the maps. Every entry point takes a loaded
`AnalysisSetup` (see `loading`) and returns plain numbers; `plots` draws them, and each
`fairseq-sparse-analyze` command's report_<command> module writes both to an output directory.
"""
from .loading import AnalysisSetup, load_for_analysis

__all__ = ["AnalysisSetup", "load_for_analysis"]
