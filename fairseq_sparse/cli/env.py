"""fairseq-sparse-env: which precisions and fused kernels fairseq will use on this machine."""

import argparse
import json


def build_parser():
    p = argparse.ArgumentParser(
        prog="fairseq-sparse-env",
        description="Print torch/CUDA versions, the devices, supported precisions (fp16, bf16, amp), "
        "apex kernel status (with the reason when one is not used), which LayerNorm/Adam/LAMB fairseq "
        "will build, and the scaled-dot-product-attention backends.",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    return p


def _lines(report, indent=0):
    pad = "  " * indent
    for key, value in report.items():
        if isinstance(value, dict):
            yield f"{pad}{key}:"
            yield from _lines(value, indent + 1)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            yield f"{pad}{key}:"
            for item in value:
                yield f"{pad}  - " + ", ".join(f"{k}={v}" for k, v in item.items())
        else:
            yield f"{pad}{key}: {value}"


def format_report(report):
    return "\n".join(_lines(report))


def main(argv=None):
    args = build_parser().parse_args(argv)
    from fairseq_sparse.environment import describe_environment

    report = describe_environment()
    print(json.dumps(report, indent=2) if args.json else format_report(report))


if __name__ == "__main__":
    main()
