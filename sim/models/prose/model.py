r"""PROSE: one transformer that predicts a trajectory's future and its governing equations.

Liu, Zhang, Schaeffer 2023, "PROSE: Predicting Operators and Symbolic Expressions using
Multimodal Transformers". Inputs: a window of a trajectory ``(t_i, u_i)`` and (optionally)
a skeleton of the equations (constants replaced by a placeholder, possibly wrong); outputs:
the state at any query times and the equations with their constants.

.. math::
    D &= \mathrm{Enc}_{data}\big(\mathrm{MLP}([\phi(t_i), \hat u_i])\big), \qquad
    S = \mathrm{Enc}_{sym}\big(\sqrt{d}\,E[s_j] + P_j\big) \\
    [D', S'] &= \mathrm{Fusion}\big([D + m_{data};\ S + m_{sym}]\big)
        \quad \text{(joint self-attention, padding mask)} \\
    \hat u(\tau) &= \mathrm{Head}\big(\mathrm{CrossDec}(\mathrm{MLP}(\phi(\tau));\ D')\big)
        \quad \text{(cross-attention only, so any query time works)} \\
    p(y_k \mid y_{<k}) &= \mathrm{softmax}\big(E\, \mathrm{CausalDec}(y_{<k};\ S')\big)
        \quad \text{(tied embeddings } E\text{)}

with :math:`\phi(t)` the time features ``[t, sin(w t), cos(w t)]`` and ``\hat u`` the input
normalised per sample and channel, ``(u - mu) / sd`` over the input window.

Deviations from the paper (stated, and why):

- Pre-LayerNorm blocks (the public code's ``norm_first``) and a final LayerNorm per stack.
- Per-sample normalisation of the data with one extra *statistics token*
  ``MLP([slog(mu), log(sd), mask])`` in the data sequence, so trajectories of very different
  scales (Lorenz ~ 20, Thomas ~ 2) share one network while the symbol decoder still sees the
  scale it needs to write constants; predictions are de-normalised with the same statistics.
- Token embeddings (std ``d^-1/2`` at init, shared by the symbol encoder, the decoder input and
  the tied output layer) are scaled by ``sqrt(d)`` before adding the sinusoidal positions, so
  positions do not swamp them (Vaswani et al.; fairseq).
- Without a symbol guess the encoder still gets the two-token sequence ``<bos> <eos>``, so the
  symbol decoder has fused symbol slots to attend to (training may drop the guess at a rate).

Args:
    max_dim: largest state dimension; data tokens are zero-padded to it.
    width, heads, ffn: transformer width, attention heads, feed-forward width.
    data_layers, symbol_layers, fusion_layers, data_decoder_layers, symbol_decoder_layers:
        depth of each stack.
    symbol_input: use a symbol guess (False: data-only encoder).
    symbol_output: generate equations (False: operator learning only).
    time_frequencies: number of sinusoidal time features (geometric frequencies).
    dropout: dropout in every transformer block.
    vocab: arguments of :class:`SymbolVocabulary`.

Shapes:
    forward(times_in (B, T), values_in (B, T, max_dim), dims (B,), times_out (B, Q),
    symbols_in (B, S) ids or None, symbols_out (B, L) ids or None, input_mask (B, T) bool or None)
    -> prediction (B, Q, max_dim), logits (B, L - 1, V) or None
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import sympy as sp
import torch
from torch import nn

from sim.errors import SimError
from sim.models.prose.symbols import SymbolError, SymbolVocabulary, as_expressions
from sim.models.registry import register_model

PRESETS: dict[str, dict[str, Any]] = {
    # ~0.77M parameters: a CPU budget of minutes (scripts/bench/prose.py)
    "cpu": {"width": 64, "heads": 4, "ffn": 256, "data_layers": 2, "symbol_layers": 2, "fusion_layers": 3,
            "data_decoder_layers": 3, "symbol_decoder_layers": 3},
    # the paper's size (~104M in the paper's count)
    "paper": {"width": 512, "heads": 8, "ffn": 2048, "data_layers": 2, "symbol_layers": 4, "fusion_layers": 8,
              "data_decoder_layers": 8, "symbol_decoder_layers": 8},
}


def sinusoidal_positions(length: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, width) sine / cosine position table of Vaswani et al."""
    pos = torch.arange(length, dtype=torch.float32, device=device)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, width, 2, dtype=torch.float32, device=device) / width)
    out = torch.zeros(length, width, device=device)
    out[:, 0::2] = torch.sin(pos * freq)
    out[:, 1::2] = torch.cos(pos * freq[: width // 2])
    return out


def causal_mask(length: int, device: torch.device | None = None) -> torch.Tensor:
    """(length, length) bool, True above the diagonal: position i may not look at j > i."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)


class CrossAttentionBlock(nn.Module):
    r"""Pre-LN cross-attention block without self-attention (queries stay independent).

    .. math:: q \leftarrow q + \mathrm{MHA}(\mathrm{LN}(q), M, M), \quad
              q \leftarrow q + \mathrm{FFN}(\mathrm{LN}(q))

    Shapes: q (B, Q, d), memory (B, M, d), memory_pad (B, M) bool (True = ignore) -> (B, Q, d).
    """

    def __init__(self, width: int, heads: int, ffn: int, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(nn.Linear(width, ffn), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor | None = None) -> torch.Tensor:
        h = self.norm1(q)
        q = q + self.drop(self.attn(h, memory, memory, key_padding_mask=memory_pad, need_weights=False)[0])
        return q + self.drop(self.ffn(self.norm2(q)))


def _encoder(width: int, heads: int, ffn: int, layers: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(width, heads, ffn, dropout, activation="gelu", batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(width), enable_nested_tensor=False)


@register_model("prose")
class PROSE(nn.Module):
    __doc__ = __doc__
    presets = PRESETS  # size presets by name (``model.preset`` of a training config)

    def __init__(self, max_dim: int = 3, width: int = 64, heads: int = 4, ffn: int = 256, data_layers: int = 2,
                 symbol_layers: int = 2, fusion_layers: int = 3, data_decoder_layers: int = 3,
                 symbol_decoder_layers: int = 3, symbol_input: bool = True, symbol_output: bool = True,
                 time_frequencies: int = 8, dropout: float = 0.0, vocab: dict[str, int] | None = None):
        super().__init__()
        if width % heads:
            raise SimError(f"PROSE width {width} is not divisible by {heads} heads")
        self.vocab = SymbolVocabulary(**(vocab or {"max_dim": max(max_dim, 6)}))
        if self.vocab.max_dim < max_dim:
            raise SimError(f"the vocabulary has variables x0..x{self.vocab.max_dim - 1} but max_dim is {max_dim}")
        self.config = {"max_dim": max_dim, "width": width, "heads": heads, "ffn": ffn, "data_layers": data_layers,
                       "symbol_layers": symbol_layers, "fusion_layers": fusion_layers,
                       "data_decoder_layers": data_decoder_layers, "symbol_decoder_layers": symbol_decoder_layers,
                       "symbol_input": symbol_input, "symbol_output": symbol_output,
                       "time_frequencies": time_frequencies, "dropout": dropout, "vocab": self.vocab.config}
        self.max_dim, self.width = max_dim, width
        self.symbol_input, self.symbol_output = symbol_input, symbol_output
        # geometric frequencies from 0.25 to 16 rad per time unit (periods ~0.4 .. 25)
        self.register_buffer("frequencies", torch.logspace(math.log10(0.25), math.log10(16.0), time_frequencies),
                             persistent=False)
        tf = 1 + 2 * time_frequencies

        def embed_mlp(n_in: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(n_in, width), nn.GELU(), nn.Linear(width, width))

        self.data_embedder = embed_mlp(tf + max_dim)
        self.stats_embedder = embed_mlp(3 * max_dim)
        self.data_encoder = _encoder(width, heads, ffn, data_layers, dropout)
        if symbol_input or symbol_output:
            self.embedding = nn.Embedding(len(self.vocab), width, padding_idx=self.vocab.pad_id)
        if symbol_input:
            self.symbol_encoder = _encoder(width, heads, ffn, symbol_layers, dropout)
            self.modality = nn.Embedding(2, width)
        self.fusion = _encoder(width, heads, ffn, fusion_layers, dropout)
        self.query_embedder = embed_mlp(tf)
        self.data_decoder = nn.ModuleList(CrossAttentionBlock(width, heads, ffn, dropout)
                                          for _ in range(data_decoder_layers))
        self.data_norm = nn.LayerNorm(width)
        self.data_head = nn.Linear(width, max_dim)
        if symbol_output:
            layer = nn.TransformerDecoderLayer(width, heads, ffn, dropout, activation="gelu", batch_first=True,
                                               norm_first=True)
            self.symbol_decoder = nn.TransformerDecoder(layer, symbol_decoder_layers, norm=nn.LayerNorm(width))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if hasattr(self, "embedding"):
            nn.init.normal_(self.embedding.weight, std=self.width**-0.5)
            with torch.no_grad():
                self.embedding.weight[self.vocab.pad_id].zero_()
        if hasattr(self, "modality"):
            nn.init.normal_(self.modality.weight, std=self.width**-0.5)

    # -- pieces --------------------------------------------------------------------------
    def time_features(self, t: torch.Tensor) -> torch.Tensor:
        """(..., ) -> (..., 1 + 2F): ``[t, sin(w t), cos(w t)]``."""
        wt = t[..., None] * self.frequencies
        return torch.cat([t[..., None], torch.sin(wt), torch.cos(wt)], dim=-1)

    def _dim_mask(self, dims: torch.Tensor) -> torch.Tensor:
        return torch.arange(self.max_dim, device=dims.device)[None, :] < dims[:, None]  # (B, D)

    def statistics(self, values: torch.Tensor, dims: torch.Tensor, input_mask: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample, per-channel mean and std (B, D) over the (valid) input steps; padded channels
        get mean 0 and std 1; a near-constant channel's std is floored at 1e-3 of the largest."""
        w = torch.ones(values.shape[:2], dtype=values.dtype, device=values.device) if input_mask is None \
            else input_mask.to(values.dtype)
        n = w.sum(1, keepdim=True).clamp(min=1.0)  # (B, 1)
        mu = (values * w[..., None]).sum(1) / n
        var = (((values - mu[:, None]) ** 2) * w[..., None]).sum(1) / n
        sd = var.sqrt()
        dm = self._dim_mask(dims)
        sd = torch.maximum(sd, 1e-3 * (sd * dm).amax(1, keepdim=True) + 1e-8)
        mu = torch.where(dm, mu, torch.zeros_like(mu))
        sd = torch.where(dm, sd, torch.ones_like(sd))
        return mu, sd

    def _symbol_embed(self, ids: torch.Tensor) -> torch.Tensor:
        pos = sinusoidal_positions(ids.shape[1], self.width, ids.device)
        return self.embedding(ids) * math.sqrt(self.width) + pos

    def encode(self, times_in: torch.Tensor, values_in: torch.Tensor, dims: torch.Tensor,
               symbols_in: torch.Tensor | None = None, input_mask: torch.Tensor | None = None) -> dict[str, Any]:
        """Fused slots and the normalisation statistics of a batch of windows (and guesses)."""
        b, t, dm = values_in.shape
        if dm != self.max_dim:
            raise SimError(f"values_in has {dm} channels; this PROSE model takes max_dim = {self.max_dim}")
        mu, sd = self.statistics(values_in, dims, input_mask)
        mask = self._dim_mask(dims)
        u = ((values_in - mu[:, None]) / sd[:, None]) * mask[:, None]
        tokens = self.data_embedder(torch.cat([self.time_features(times_in), u], dim=-1))  # (B, T, d)
        slog = torch.sign(mu) * torch.log1p(mu.abs())
        stats = self.stats_embedder(torch.cat([slog, sd.log(), mask.to(sd.dtype)], dim=-1))[:, None]  # (B, 1, d)
        data = torch.cat([stats, tokens], dim=1)
        data_pad = torch.zeros(b, t + 1, dtype=torch.bool, device=values_in.device)
        if input_mask is not None:
            data_pad[:, 1:] = ~input_mask
        data = self.data_encoder(data, src_key_padding_mask=data_pad)
        if self.symbol_input:
            if symbols_in is None:  # no guess: the empty sequence <bos> <eos>
                symbols_in = torch.tensor([[self.vocab.bos_id, self.vocab.eos_id]], device=values_in.device
                                          ).expand(b, -1)
            sym_pad = symbols_in == self.vocab.pad_id
            sym = self.symbol_encoder(self._symbol_embed(symbols_in), src_key_padding_mask=sym_pad)
            fused = torch.cat([data + self.modality.weight[0], sym + self.modality.weight[1]], dim=1)
            pad = torch.cat([data_pad, sym_pad], dim=1)
        else:
            fused, pad = data, data_pad
        fused = self.fusion(fused, src_key_padding_mask=pad)
        n = data.shape[1]
        out = {"data": fused[:, :n], "data_pad": data_pad, "mu": mu, "sd": sd, "dims": dims}
        if self.symbol_input:  # the symbol decoder reads the fused symbol slots only
            out["symbols"], out["symbols_pad"] = fused[:, n:], pad[:, n:]
        else:
            out["symbols"], out["symbols_pad"] = fused, pad
        return out

    def decode_data(self, memory: dict[str, Any], times_out: torch.Tensor) -> torch.Tensor:
        """(B, Q) query times -> (B, Q, max_dim) states (padded channels are 0)."""
        q = self.query_embedder(self.time_features(times_out))
        for block in self.data_decoder:
            q = block(q, memory["data"], memory["data_pad"])
        norm = self.data_head(self.data_norm(q))
        mask = self._dim_mask(memory["dims"])[:, None]
        return (norm * memory["sd"][:, None] + memory["mu"][:, None]) * mask

    def symbol_logits(self, memory: dict[str, Any], prefix: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids (starting with BOS) -> (B, L, V) next-token logits (causal)."""
        if not self.symbol_output:
            raise SimError("this PROSE model was built without a symbol decoder (symbol_output=False)")
        n = prefix.shape[1]
        h = self.symbol_decoder(self._symbol_embed(prefix), memory["symbols"], tgt_mask=causal_mask(n, prefix.device),
                                tgt_is_causal=True, tgt_key_padding_mask=prefix == self.vocab.pad_id,
                                memory_key_padding_mask=memory["symbols_pad"])
        return h @ self.embedding.weight.T

    def forward(self, times_in: torch.Tensor, values_in: torch.Tensor, dims: torch.Tensor, times_out: torch.Tensor,
                symbols_in: torch.Tensor | None = None, symbols_out: torch.Tensor | None = None,
                input_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        memory = self.encode(times_in, values_in, dims, symbols_in, input_mask)
        pred = self.decode_data(memory, times_out)
        logits = None
        if symbols_out is not None and self.symbol_output:
            logits = self.symbol_logits(memory, symbols_out[:, :-1])
        return pred, logits

    # -- generation ----------------------------------------------------------------------
    @torch.no_grad()
    def greedy(self, memory: dict[str, Any], max_len: int = 200) -> list[list[int]]:
        """Greedy decoding of a batch: token ids per sample (without BOS, up to EOS)."""
        b = memory["symbols"].shape[0]
        dev = memory["symbols"].device
        seq = torch.full((b, 1), self.vocab.bos_id, dtype=torch.long, device=dev)
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        for _ in range(max_len):
            nxt = self.symbol_logits(memory, seq)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, self.vocab.pad_id), nxt)
            seq = torch.cat([seq, nxt[:, None]], dim=1)
            done |= nxt == self.vocab.eos_id
            if bool(done.all()):
                break
        return [[int(i) for i in row[1:] if int(i) != self.vocab.pad_id] for row in seq]

    @torch.no_grad()
    def beam_search(self, memory: dict[str, Any], beam_size: int = 4, max_len: int = 200, length_penalty: float = 1.0
                    ) -> list[list[tuple[float, list[int]]]]:
        """Beam search per sample: candidates ``(score, ids)`` best first, score = sum of log
        probabilities / length ** length_penalty."""
        out = []
        for i in range(memory["symbols"].shape[0]):
            mem = {k: (v[i:i + 1] if torch.is_tensor(v) else v) for k, v in memory.items()}
            alive: list[tuple[float, list[int]]] = [(0.0, [self.vocab.bos_id])]
            finished: list[tuple[float, list[int]]] = []
            for _ in range(max_len):
                if not alive:
                    break
                seq = torch.tensor([ids for _, ids in alive], device=mem["symbols"].device)
                k = seq.shape[0]
                m = {key: (v.expand(k, *v.shape[1:]) if torch.is_tensor(v) else v) for key, v in mem.items()}
                logp = torch.log_softmax(self.symbol_logits(m, seq)[:, -1].float(), dim=-1)  # (k, V)
                total = torch.tensor([s for s, _ in alive], device=logp.device)[:, None] + logp
                top = total.flatten().topk(min(beam_size, total.numel()))
                alive = []
                for score, flat in zip(top.values.tolist(), top.indices.tolist()):
                    src, tok = divmod(flat, logp.shape[1])
                    ids = [*seq[src].tolist(), tok]
                    if tok == self.vocab.eos_id:
                        finished.append((score, ids))
                    else:
                        alive.append((score, ids))
                if len(finished) >= beam_size:
                    break
            finished += alive  # unfinished hypotheses rank after by their own scores
            ranked = sorted(finished, key=lambda c: -c[0] / max(1, len(c[1]) - 1) ** length_penalty)
            out.append([(s / max(1, len(ids) - 1) ** length_penalty, ids[1:]) for s, ids in ranked[:beam_size]])
        return out

    # -- the model-level query -----------------------------------------------------------
    @torch.no_grad()
    def query(self, times: Sequence[float] | np.ndarray, values: np.ndarray, query_times: Sequence[float] | np.ndarray,
              symbols: str | sp.Expr | Sequence[str | sp.Expr] | None = None, beam_size: int = 1,
              max_len: int = 200) -> tuple[np.ndarray, list[sp.Expr] | None]:
        """Predict a trajectory's future and its equations from one observed window.

        Args:
            times: (T,) observation times of the window.
            values: (T, d) observed states, ``d <= max_dim``.
            query_times: (Q,) times at which to predict the state (any times; the model was
                trained on the 128 points after a 64-point window on [0, 6]).
            symbols: optional guess of the equations, used as a skeleton (its constants are
                replaced by placeholders; symbols other than ``x0..x{d-1}`` count as constants):
                a prefix string in the store's notation (``"add x0 mul 0.2 x1 | ..."``), one sympy
                expression or infix string per component (``["10*(x1 - x0)", ...]``), or None.
            beam_size: 1 for greedy decoding; more runs beam search and returns the best
                candidate that parses into ``d`` components.
            max_len: longest generated token sequence.

        Returns:
            (prediction (Q, d) as numpy, equations as a list of ``d`` sympy expressions in
            ``x0..x{d-1}``, or None when the model has no symbol decoder or no candidate parses
            into ``d`` components).
        """
        values = np.asarray(values, dtype=np.float64)
        times = np.asarray(times, dtype=np.float64)
        query_times = np.asarray(query_times, dtype=np.float64)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2 or times.shape != (values.shape[0],):
            raise SimError(f"query needs times (T,) and values (T, d); got {times.shape} and {values.shape}")
        d = values.shape[1]
        if not 1 <= d <= self.max_dim:
            raise SimError(f"the window has {d} components; this PROSE model handles 1..{self.max_dim}")
        if query_times.ndim != 1:
            raise SimError(f"query_times must be (Q,); got {query_times.shape}")
        if not (np.isfinite(values).all() and np.isfinite(times).all() and np.isfinite(query_times).all()):
            raise SimError("the window or the query times contain NaN or infinite values")
        dev = next(self.parameters()).device
        dtype = next(self.parameters()).dtype
        padded = np.zeros((values.shape[0], self.max_dim))
        padded[:, :d] = values
        sym_ids = None
        if symbols is not None:
            if not self.symbol_input:
                raise SimError("this PROSE model takes no symbol input (symbol_input=False); call without symbols")
            exprs = as_expressions(symbols)
            if len(exprs) != d:
                raise SimError(f"the equation guess has {len(exprs)} components; the window has {d}")
            sym_ids = torch.tensor([self.vocab.ids(self.vocab.encode(exprs, skeleton=True))], device=dev)
        was_training = self.training
        self.eval()
        try:
            memory = self.encode(torch.tensor(times[None], dtype=dtype, device=dev),
                                 torch.tensor(padded[None], dtype=dtype, device=dev),
                                 torch.tensor([d], device=dev), sym_ids)
            pred = self.decode_data(memory, torch.tensor(query_times[None], dtype=dtype, device=dev))
            pred = pred[0, :, :d].double().cpu().numpy()
            exprs_out = None
            if self.symbol_output:
                cands = [ids for _, ids in self.beam_search(memory, beam_size, max_len)[0]] if beam_size > 1 \
                    else self.greedy(memory, max_len)
                for ids in cands:
                    try:
                        e = self.vocab.decode(self.vocab.to_tokens(ids))
                    except SymbolError:
                        continue
                    if len(e) == d:
                        exprs_out = list(e)
                        break
        finally:
            self.train(was_training)
        return pred, exprs_out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
