"""Model loading: pinned named models (converted once from GGUF and cached), the shipped translation model, and any
Hugging Face model; attribute classifiers on a model's hidden states, for conditional beam search.

The classifier names load torch, so they are imported on first use: ``import models`` stays cheap for ``lq``."""

from typing import TYPE_CHECKING, Any

from models.registry import (
    NAMED_MODELS,
    ModelInfo,
    ModelNotAvailableError,
    NamedModelSpec,
    NamedModelStatus,
    RecurrenceSpec,
    ShippedModelSpec,
    cache_dir,
    load_lm,
    load_model,
    named_model_status,
)

if TYPE_CHECKING:
    from models.classifier import (
        AttributeHead,
        ClassifierData,
        ClassifierMetrics,
        HiddenStateClassifier,
        classifier_folder,
        collect,
        expected_calibration_error,
        load_classifier,
        reliability,
        save_classifier,
        train_classifier,
    )

_CLASSIFIER_NAMES = {
    "AttributeHead", "ClassifierData", "ClassifierMetrics", "HiddenStateClassifier", "classifier_folder", "collect",
    "expected_calibration_error", "load_classifier", "reliability", "save_classifier", "train_classifier",
}


def __getattr__(name: str) -> Any:
    if name in _CLASSIFIER_NAMES:
        from models import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")


__all__ = [
    "NAMED_MODELS", "AttributeHead", "ClassifierData", "ClassifierMetrics", "HiddenStateClassifier", "ModelInfo",
    "ModelNotAvailableError", "NamedModelSpec", "NamedModelStatus", "RecurrenceSpec", "ShippedModelSpec",
    "cache_dir",
    "classifier_folder", "collect",
    "expected_calibration_error", "load_classifier", "load_lm", "load_model", "named_model_status", "reliability",
    "save_classifier", "train_classifier",
]
