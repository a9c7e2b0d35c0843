"""Forward passes of encoders: token embeddings at a chosen layer, pooled sentence embeddings.

Pure functions over a :class:`~evalsuite.runtime.models.LoadedModel` and one padded batch;
batching, ordering and device policy are the caller's (:class:`~evalsuite.runtime.Runtime`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from evalsuite.runtime.models import LoadedModel


class _StopForward(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised by a hook once the wanted layer has run, so deeper layers cost nothing."""


def layer_modules(model: Any) -> torch.nn.ModuleList | None:
    """The model's stack of transformer layers (BERT ``encoder.layer``, DistilBERT ``transformer.layer``...)."""
    depth = getattr(model.config, "num_hidden_layers", None)
    for _, module in model.named_modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == depth:
            return module
    return None


def pad_batch(
    token_ids: Sequence[Sequence[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad id lists into ``input_ids`` and ``attention_mask`` tensors on ``device``."""
    longest = max(len(ids) for ids in token_ids)
    input_ids = torch.full((len(token_ids), longest), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(token_ids), longest), dtype=torch.long)
    for row, ids in enumerate(token_ids):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return input_ids.to(device), attention_mask.to(device)


def hidden_states_at(encoder: LoadedModel, token_ids: Sequence[Sequence[int]], layer: int) -> torch.Tensor:
    """Hidden states after ``layer`` transformer layers (0 = embeddings), shape [batch, longest, dim].

    Layers above ``layer`` are not computed. For the last layer this is the model's own output,
    as ``bert_score`` computes it after dropping the unused layers.
    """
    model = encoder.model
    pad_id = encoder.tokenizer.pad_token_id or 0
    input_ids, attention_mask = pad_batch(token_ids, pad_id, encoder.device)
    if layer == encoder.num_layers:
        return model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
    layers = layer_modules(model)
    if layer == 0 or layers is None:
        outputs = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return outputs.hidden_states[layer]
    captured: list[torch.Tensor] = []

    def capture(_module: Any, _inputs: Any, output: Any) -> None:
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _StopForward

    handle = layers[layer - 1].register_forward_hook(capture)
    try:
        model(input_ids=input_ids, attention_mask=attention_mask)
    except _StopForward:
        pass
    finally:
        handle.remove()
    return captured[0]


def pooled_embeddings(encoder: LoadedModel, token_ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """Sentence embeddings pooled as the model's sentence-transformers config says (mean by default)."""
    hidden = hidden_states_at(encoder, token_ids, encoder.num_layers)
    _, attention_mask = pad_batch(token_ids, 0, encoder.device)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooling = encoder.sentence_config.get("pooling", "mean")
    if pooling == "cls":
        pooled = hidden[:, 0]
    elif pooling == "max":
        pooled = hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    else:
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    if encoder.sentence_config.get("normalize"):
        pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
    return pooled


def pair_inputs(
    rows: Sequence[Sequence[tuple[int, int]]], pad_id: int, device: torch.device, *, segments: bool = True
) -> dict[str, torch.Tensor]:
    """``input_ids``, ``attention_mask`` and (with ``segments``) ``token_type_ids`` of (token id,
    segment id) rows, right-padded, on ``device``: a classifier's inputs, for inference or training."""
    input_ids, attention_mask = pad_batch([[token for token, _ in row] for row in rows], pad_id, device)
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if segments:
        token_type_ids = torch.zeros_like(input_ids)
        for index, row in enumerate(rows):
            token_type_ids[index, : len(row)] = torch.tensor(
                [segment for _, segment in row], dtype=torch.long
            )
        inputs["token_type_ids"] = token_type_ids
    return inputs


def classify(classifier: LoadedModel, pairs: Sequence[Sequence[tuple[int, int]]]) -> torch.Tensor:
    """Logits ``[batch, labels]`` of a sequence-classification head for (token id, segment id) rows."""
    tokenizer = classifier.tokenizer
    inputs = pair_inputs(
        pairs,
        tokenizer.pad_token_id or 0,
        classifier.device,
        segments="token_type_ids" in tokenizer.model_input_names,
    )
    return classifier.model(**inputs).logits
