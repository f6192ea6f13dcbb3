"""Classification metrics every classification task reports the same way (after training, and
after an optimization, so before/after compare like with like)."""

from __future__ import annotations

from collections.abc import Sequence

from verticals.sdk.contracts import Evaluation


def classification_evaluation(
    y_true: Sequence[int],
    y_pred: Sequence[int],
    labels: Sequence[str],
    *,
    scores: Sequence[Sequence[float]] | None = None,
    top_k: Sequence[int] = (),
) -> Evaluation:
    """Accuracy, macro-F1, top-k accuracy (from `scores`), a confusion matrix (rows: true label,
    columns: predicted) and a per-class report (precision, recall, F1, support)."""
    n = len(labels)
    matrix = [[0] * n for _ in range(n)]
    for t, p in zip(y_true, y_pred, strict=True):
        matrix[t][p] += 1
    total = len(y_true)
    correct = sum(matrix[i][i] for i in range(n))
    per_class, f1s = {}, []
    for i, label in enumerate(labels):
        tp = matrix[i][i]
        predicted = sum(matrix[r][i] for r in range(n))
        support = sum(matrix[i])
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": round(precision, 6),
            "recall": round(recall, 6),
            "f1": round(f1, 6),
            "support": support,
        }
        if support:
            f1s.append(f1)
    metrics = {
        "accuracy": correct / total if total else 0.0,
        "macro_f1": sum(f1s) / len(f1s) if f1s else 0.0,
    }
    for k in top_k:
        if scores is None:
            continue
        hits = 0
        for t, row in zip(y_true, scores, strict=True):
            best = sorted(range(len(row)), key=lambda j: row[j], reverse=True)[:k]
            hits += t in best
        metrics[f"top{k}_accuracy"] = hits / total if total else 0.0
    return Evaluation(
        metrics=metrics,
        report={
            "labels": list(labels),
            "confusion_matrix": matrix,
            "per_class": per_class,
            "examples": total,
        },
    )


def label_scores(
    probabilities: Sequence[float], labels: Sequence[str], top_k: int | None = None
) -> list[dict]:
    """The Hugging Face pipeline shape of one classification: [{label, score}] by descending score."""
    ranked = sorted(zip(labels, probabilities, strict=True), key=lambda pair: pair[1], reverse=True)
    if top_k is not None:
        ranked = ranked[:top_k]
    return [{"label": label, "score": float(score)} for label, score in ranked]


CLASSIFICATION_OUTPUT = {
    "type": "array",
    "description": "Labels by descending score (Hugging Face pipeline shape).",
    "items": {
        "type": "object",
        "properties": {
            "label": {"type": "string"},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["label", "score"],
        "additionalProperties": False,
    },
    "minItems": 1,
}
