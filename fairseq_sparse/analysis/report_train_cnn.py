"""`fairseq-sparse-analyze train-cnn`: train the pattern CNN on the maps labelled by hand and
measure its agreement (and the rules', before and after refitting them) with the labels."""

import os

import numpy as np

from . import metrics
from .outputs import write_json
from .pattern_classes import CLASSES, calibrate
from .pattern_cnn import cross_validated_predictions, predict, read_labels, save_cnn, train_cnn
from .report_common import out_path, set_threads
from .report_label_maps import FEATURES


def run(args):
    set_threads(args)
    if not os.path.isfile(args.maps):
        raise FileNotFoundError(f"--maps {args.maps!r} not found (written by `{args.prog} label-maps`)")
    data = np.load(args.maps)
    for key in ("images", "map_id", "rule_label"):
        if key not in data:
            raise ValueError(f"{args.maps!r} lacks array {key!r}: not a maps.npz from `{args.prog} label-maps`")
    labels = read_labels(args.labels)
    position = {int(m): i for i, m in enumerate(data["map_id"])}
    unknown = sorted(set(labels) - set(position))
    if unknown:
        raise ValueError(f"{args.labels!r} labels map ids {unknown[:10]} that {args.maps!r} does not contain")
    ids = sorted(labels)
    if len(ids) < max(args.folds, 2):
        raise ValueError(f"only {len(ids)} labelled maps in {args.labels!r}; label at least {max(args.folds, 2)}")
    rows = [position[i] for i in ids]
    images, human = data["images"][rows], np.array([labels[i] for i in ids])
    rules = data["rule_label"][rows]
    cv = cross_validated_predictions(images, human, folds=args.folds, seed=args.seed, epochs=args.epochs)
    model = train_cnn(images, human, epochs=args.epochs, seed=args.seed)
    all_rules, all_cnn = data["rule_label"], predict(model, data["images"]).numpy()

    def agree(a, b):
        return {"accuracy": metrics.accuracy(a, b), "cohen_kappa": metrics.cohen_kappa(a, b, len(CLASSES))}

    calibrated = None
    if all(k in data for k in FEATURES):  # refit the rule thresholds to the hand labels
        fitted, in_sample, rule_cv = calibrate(
            {k: data[k][rows] for k in FEATURES}, human, folds=args.folds, seed=args.seed
        )
        calibrated = {
            "thresholds": {k: getattr(fitted, k) for k in ("vertical", "diagonal", "minor", "mixed", "block")},
            "rules_vs_human_in_sample": agree(in_sample.numpy(), human),
            "rules_vs_human_cross_validated": agree(rule_cv.numpy(), human),
            "confusion_human_rows_rule_columns": metrics.confusion_counts(human, in_sample.numpy(), len(CLASSES)),
            "use_with": " ".join(
                f"--{k}-threshold {getattr(fitted, k)}" for k in ("vertical", "diagonal", "minor", "mixed")
            ),
        }

    result = {
        "maps": args.maps,
        "labels": args.labels,
        "labelled_maps": len(ids),
        "folds": args.folds,
        "epochs": args.epochs,
        "seed": args.seed,
        "classes": list(CLASSES),
        "human_class_counts": {c: int((human == k).sum()) for k, c in enumerate(CLASSES)},
        "cnn_vs_human_cross_validated": agree(cv, human),
        "rules_vs_human": agree(rules, human),
        "cnn_cross_validated_vs_rules": agree(cv, rules),
        "final_cnn_vs_rules_all_exported_maps": agree(all_cnn, all_rules),
        "confusion_human_rows_cnn_columns": metrics.confusion_counts(human, cv, len(CLASSES)),
        "confusion_human_rows_rule_columns": metrics.confusion_counts(human, rules, len(CLASSES)),
        "rules_calibrated_to_human": calibrated,
    }
    written = [
        save_cnn(model, out_path(args, "pattern_cnn.pt")),
        write_json(out_path(args, "cnn_agreement.json"), result),
    ]
    for name in ("cnn_vs_human_cross_validated", "rules_vs_human", "cnn_cross_validated_vs_rules"):
        print(f"{name}: accuracy {result[name]['accuracy']:.3f}, kappa {result[name]['cohen_kappa']:.3f}")
    if calibrated:
        cv = calibrated["rules_vs_human_cross_validated"]
        print(
            f"rules refitted to the labels ({calibrated['use_with']}): cross-validated accuracy "
            f"{cv['accuracy']:.3f}, kappa {cv['cohen_kappa']:.3f}"
        )
    return written
