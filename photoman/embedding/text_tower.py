"""A lean forward pass of a CLIP or SigLIP text tower for one query at a time: the daemon's hot path.

A single search query is ~10 tokens, so its cost is not arithmetic but per-module overhead: the
transformers forward spends about half of a 17 ms int8 encoding in Python wrappers (output capture,
mask builders, attention dispatch). This runs the very same modules (embeddings, LayerNorms, the
possibly int8-quantised Linears, the activation) with plain functional glue and the same
scaled-dot-product attention, so its vectors equal the transformers ones (a test holds them to
1e-5). CLIP: causal attention, the end token's state through ``text_projection``. SigLIP: attention
both ways over the 64 tokens it was trained on (text padded with the pad token, no mask: the
transformers reference passes none, SigLIP 2's tokenizer returning no mask), the last position's state
through the text model's ``head``. Batches keep the transformers forward.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def _fused(*linears: torch.nn.Linear) -> torch.nn.Linear:
    """One Linear computing several Linears of the same input side by side (q, k, v)."""
    out = torch.nn.Linear(linears[0].in_features, sum(m.out_features for m in linears))
    with torch.no_grad():
        out.weight.copy_(torch.cat([m.weight for m in linears]))
        out.bias.copy_(torch.cat([m.bias for m in linears]))
    return out


def _int8(linear: torch.nn.Linear) -> Any:
    """int8 weights, one scale per output row (closer to fp32 than one scale per matrix)."""
    import warnings

    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seq = quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear: per_channel_dynamic_qconfig})
    return seq[0]


def int8_available() -> bool:
    """Whether this torch still ships eager dynamic quantisation (deprecated upstream)."""
    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic  # noqa: F401
    except ImportError:
        return False
    return True


def _projection(clip: Any) -> Any:
    """The text projection: CLIP's ``text_projection``, SigLIP's ``text_model.head``."""
    proj = getattr(clip, "text_projection", None)
    return proj if proj is not None else getattr(getattr(clip, "text_model", None), "head", None)


def _siglip(clip: Any) -> bool:
    return getattr(clip, "text_projection", None) is None


class LeanTextTower:
    """A text tower + projection for one token sequence (CLIP: unpadded; SigLIP: padded to 64).

    With ``int8`` the Linears run with int8 weights (dynamic quantisation, per output row): one
    query's encoding reads ~38 MB of weights instead of ~150 MB, about twice as fast on a CPU, at a
    cosine of ~0.999 to fp32. q, k and v are one fused Linear (one weight read, one call).
    """

    def __init__(self, clip: Any, int8: bool = False) -> None:
        tm = clip.text_model
        self.int8 = bool(int8 and int8_available())
        wrap = _int8 if self.int8 else (lambda m: m)
        self.token_embedding = tm.embeddings.token_embedding
        self.position_embedding = tm.embeddings.position_embedding
        self.final_ln = tm.final_layer_norm
        proj = _projection(clip)
        self.projection = _int8(proj) if self.int8 else proj
        self.causal = not _siglip(clip)  # SigLIP attends both ways and pools the last position
        self.eos_token_id: Any = getattr(tm, "eos_token_id", None) if self.causal else None
        self.layers = []
        for layer in tm.encoder.layers:
            attn = layer.self_attn
            self.layers.append(
                (
                    layer.layer_norm1,
                    wrap(_fused(attn.q_proj, attn.k_proj, attn.v_proj)),
                    wrap(attn.out_proj),
                    attn.num_heads,
                    attn.head_dim,
                    float(attn.scale),
                    layer.layer_norm2,
                    wrap(layer.mlp.fc1),
                    layer.mlp.activation_fn,
                    wrap(layer.mlp.fc2),
                )
            )

    @staticmethod
    def supports(clip: Any, tokenizer: Any = None) -> bool:
        """Only the standard CLIP and SigLIP text layouts (the ones this forward mirrors) take the lean
        path; for SigLIP only when its tokenizer gives no attention mask (then none is used)."""
        tm: Any = getattr(clip, "text_model", None)
        if _siglip(clip) and "attention_mask" in (getattr(tokenizer, "model_input_names", None) or []):
            return False
        try:
            layer = tm.encoder.layers[0]
            attn = layer.self_attn
            return (
                all(isinstance(m, torch.nn.Linear) for m in (attn.q_proj, attn.k_proj, attn.v_proj))
                and attn.q_proj.bias is not None
                and isinstance(layer.mlp.fc1, torch.nn.Linear)
                and isinstance(_projection(clip), torch.nn.Linear)
                and hasattr(tm.embeddings, "position_embedding")
                and hasattr(tm, "final_layer_norm")
            )
        except (AttributeError, IndexError, TypeError):
            return False

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The transformer layers and final LayerNorm over embedded tokens x of shape (1, L, width)."""
        length = x.shape[1]
        for ln1, qkv, out_proj, heads, head_dim, scale, ln2, fc1, act, fc2 in self.layers:
            q, k, v = qkv(ln1(x)).view(1, length, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal, scale=scale)
            x = x + out_proj(a.transpose(1, 2).reshape(1, length, heads * head_dim))
            x = x + fc2(act(fc1(ln2(x))))
        return self.final_ln(x)

    def project(self, x: torch.Tensor, eos: torch.Tensor | int) -> torch.Tensor:
        """The end token's hidden state through the text projection, shape (1, dim)."""
        return self.projection(x[:, eos])

    def eos_position(self, input_ids: torch.Tensor) -> int:
        """The position pooled: CLIP's end token (transformers' rule, legacy configs included); SigLIP's
        last position, whatever token is there."""
        ids = input_ids[0]
        if not self.causal:
            return len(ids) - 1
        if self.eos_token_id == 2:  # legacy configs: the end token has the highest id (as transformers does)
            return int(ids.argmax())
        where = torch.eq(ids, self.eos_token_id).nonzero()
        return int(where[0, 0]) if len(where) else len(ids) - 1

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Token plus position embeddings, shape (1, L, width)."""
        pos = torch.arange(input_ids.shape[-1], device=input_ids.device)
        return self.token_embedding(input_ids) + self.position_embedding(pos)[None]

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Projected (unnormalised) text features, shape (1, dim), for input_ids of shape (1, L)
        (for SigLIP already padded to its length, as :meth:`ClipEncoder.tokenize` does)."""
        return self.project(self.hidden(self.embed(input_ids)), self.eos_position(input_ids))
