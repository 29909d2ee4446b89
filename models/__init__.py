"""Model loading: pinned named models (converted once from GGUF and cached) and any Hugging Face model."""

from models.registry import (
    NAMED_MODELS,
    ModelInfo,
    ModelNotAvailableError,
    NamedModelSpec,
    NamedModelStatus,
    cache_dir,
    load_lm,
    load_model,
    named_model_status,
)

__all__ = [
    "NAMED_MODELS", "ModelInfo", "ModelNotAvailableError", "NamedModelSpec", "NamedModelStatus", "cache_dir",
    "load_lm", "load_model", "named_model_status",
]
