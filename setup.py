from setuptools import find_packages, setup

setup(
    name="fairseq_sparse",
    version="0.1.0",
    description="Sparse self-attention (SSAF, SparseBERT/DAM) and head analysis for fairseq RoBERTa/BERT",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["fairseq_sparse", "fairseq_sparse.*"]),
    # Any recent torch: GPU users keep the build they have; CPU machines install torch==2.13.0
    # first (README) so pip never pulls a multi-GB CUDA wheel to satisfy this range.
    install_requires=[
        "torch>=2.0",
        "fairseq-fixed==0.12.3.1",
        "numpy",
        "tqdm",
        "matplotlib",
        "safetensors",
        "sentencepiece",
        "tensorboardX",
    ],
    extras_require={"test": ["pytest", "pytest-xdist", "entmax", "tokenizers"]},
    entry_points={
        "console_scripts": [
            "fairseq-sparse-env = fairseq_sparse.cli.env:main",
            "fairseq-sparse-export-mask = fairseq_sparse.cli.export_mask:main",
            "fairseq-sparse-convert-bert = fairseq_sparse.cli.convert_bert:main",
            "fairseq-sparse-analyze = fairseq_sparse.cli.analyze:main",
        ]
    },
)
