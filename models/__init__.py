"""Model loading: pinned named models (converted once from GGUF and cached), the shipped translation model, and any
Hugging Face model."""

from models.registry import (
    NAMED_MODELS,
    ModelInfo,
    ModelNotAvailableError,
    NamedModelSpec,
    NamedModelStatus,
    ShippedModelSpec,
    cache_dir,
    load_lm,
    load_model,
    named_model_status,
)

__all__ = [
    "NAMED_MODELS", "ModelInfo", "ModelNotAvailableError", "NamedModelSpec", "NamedModelStatus", "ShippedModelSpec",
    "cache_dir", "load_lm", "load_model", "named_model_status",
]
