import os

from setuptools import find_packages, setup


def optional_extension():
    """The fused CPU normalisers (fairseq_sparse/csrc), built when torch and a C++ compiler are
    at hand; without them the package installs alone and uses its eager PyTorch normalisers.

    torch must be importable while building: `pip install --no-build-isolation -e .`.
    FAIRSEQ_SPARSE_NO_EXT=1 skips the build.
    """
    if os.environ.get("FAIRSEQ_SPARSE_NO_EXT") == "1":
        return [], {}
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension
    except ImportError:
        print("fairseq_sparse: torch is not importable at build time; installing without the fused normalisers")
        return [], {}

    class OptionalBuildExtension(BuildExtension):
        def build_extensions(self):
            try:  # a failed compile is caught per extension (optional=True); this catches the rest
                super().build_extensions()
            except Exception as e:  # e.g. no C++ compiler: torch's ABI check fails first
                self.warn(f"fairseq_sparse: not building the fused CPU normalisers ({e}); installing without them")

    ext = CppExtension(
        "fairseq_sparse._C",
        ["fairseq_sparse/csrc/normalizers.cpp"],
        extra_compile_args=["-O3", "-fopenmp", "-fno-trapping-math", "-fno-math-errno"],
        extra_link_args=["-fopenmp"],
        optional=True,  # setuptools warns and goes on when the build fails
    )
    return [ext], {"build_ext": OptionalBuildExtension.with_options(use_ninja=False)}


EXT_MODULES, CMDCLASS = optional_extension()

setup(
    name="fairseq_sparse",
    version="0.1.0",
    description="Sparse self-attention (SSAF, SparseBERT/DAM) and head analysis for fairseq RoBERTa/BERT",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["fairseq_sparse", "fairseq_sparse.*"]),
    ext_modules=EXT_MODULES,
    cmdclass=CMDCLASS,
    # Any recent torch: GPU users keep the build they have; CPU machines install torch==2.13.0
    # first (README) so pip never pulls a multi-GB CUDA wheel to satisfy this range.
    install_requires=[
        # 2.1: SDPA's scale=; 2.4: torch.serialization.add_safe_globals (weights-only checkpoint reading)
        "torch>=2.4",
        "fairseq-fixed==0.12.3.1",
        "numpy",
        "tqdm",
        "matplotlib",
        "safetensors",
        "sentencepiece",
        "tokenizers>=0.19",  # BERT WordPiece (data/wordpiece.py); a small Rust wheel, no transformers
        "tensorboardX",
    ],
    # triton: the GPU kernels' tests run them on the CPU through its interpreter (tests/test_kernels.py)
    extras_require={
        "test": ["pytest", "pytest-xdist", "ruff==0.17.6", "entmax", "triton>=3.0; platform_system == 'Linux'"]
    },
    entry_points={
        "console_scripts": [
            "fairseq-sparse-env = fairseq_sparse.cli.env:main",
            "fairseq-sparse-export-mask = fairseq_sparse.cli.export_mask:main",
            "fairseq-sparse-convert-bert = fairseq_sparse.cli.convert_bert:main",
            "fairseq-sparse-analyze = fairseq_sparse.cli.analyze:main",
            "fairseq-sparse-finetune = fairseq_sparse.cli.finetune:main",
        ]
    },
)
