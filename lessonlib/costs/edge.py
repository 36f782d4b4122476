"""Will it run on the device? Memory, decode speed and expected quality of candidate models on an edge device.

The simulator of lessons 03a and 03b compares the two ways of making a model cheaper that the lesson is about:

* **mixture of experts** (a :class:`~lessonlib.costs.ModelSpec` with ``n_experts > 1``): each token runs only
  ``experts_per_token`` experts, so FLOPs and, at batch 1, bytes read per token shrink; but every expert must
  stay in memory, because the next token may pick any of them.
* **pruning** a dense model at a sparsity ``s`` (the fraction of the blocks' weight matrices removed):

  - ``"unstructured"``: the smallest weights anywhere become zeros; ``"2:4"``: two of every four consecutive
    weights are zero (s = 0.5 always). What the zeros save depends on the **kernel**, a setting of every
    pruned candidate (``sparse_kernel``):

    - ``False``, the default, is what lesson 03b measures on a CPU with PyTorch's dense kernels: the zeros are
      stored and multiplied like any other value, so memory, bytes read and FLOPs are the dense model's.
    - ``True`` assumes a format and a kernel that skip them: the kept values plus a bitmask of one bit per
      position (unstructured: ``(1 - s) * b + 1/8`` bytes per parameter) or a 2-bit index per kept value
      (2:4: ``b / 2 + 1/8``), streamed at that size. Hardware that does this: NVIDIA's sparse tensor cores
      (Ampere and later, the Jetson Orin's GPU included) for 2:4, through cuSPARSELt or TensorRT; for
      unstructured sparsity, sparse kernels for memory-bound matrix-vector products on CPUs and GPUs, which
      win at moderate to high sparsity (lesson 03b measures PyTorch's CSR kernel losing at 50%). FLOPs are
      still counted dense (sparse tensor cores would halve 2:4's; this simulator does not count that).
  - ``"structured"``: whole MLP channels and key/value head groups are removed, leaving a smaller dense model
    that saves memory, bytes read and FLOPs alike, with any kernel.

Embeddings, norms and biases are never pruned (the same convention as :mod:`lessonlib.models.pruning`).
Decode time is the roofline of :mod:`lessonlib.costs.roofline`: the slower of bytes moved / bandwidth and FLOPs /
peak FLOP/s, for one decode step of ``batch_size`` sequences.

    phone = hardware_preset("phone-snapdragon-8-gen-3")
    moe = Candidate("Mixtral-8x7B", model_preset("mixtral-8x7b"))
    pruned = prune(model_preset("mistral-7b"), "structured", 0.5)
    for c in (moe, pruned):
        print(assess(c, phone, "int4", memory_fraction=0.6))
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..core.checks import require_sparsity
from .hardware import HardwareSpec
from .memory import MemoryFit
from .precision import kv_bytes, weight_bytes
from .roofline import PassCost, check_pass
from .spec import ModelSpec

PRUNING_KINDS = ("unstructured", "2:4", "structured")
KINDS = ("dense", "moe") + PRUNING_KINDS
BITMASK_BYTES = 1 / 8          # one bit per position, kept or not
TWO_FOUR_INDEX_BYTES = 2 / 8   # a 2-bit position (0-3) per kept value in each group of four


def prunable_params(spec: ModelSpec) -> int:
    """Parameters pruning may remove: the weight matrices of every block (all experts of an MoE)."""
    return spec.block_weight_params()


def structured_spec(spec: ModelSpec, sparsity: float) -> ModelSpec:
    """The smaller dense model left after removing a fraction ``sparsity`` of every layer's MLP channels and
    of its key/value head groups (each group: one KV head and the query heads that share it). Head counts
    are whole numbers, so the attention keeps at least one group and rounds to the nearest group."""
    require_sparsity(sparsity)
    group = spec.n_heads // spec.n_kv_heads
    kv_kept = max(1, round(spec.n_kv_heads * (1 - sparsity)))
    return dataclasses.replace(spec, name=f"{spec.name} structured {sparsity:.0%}", n_kv_heads=kv_kept,
                               n_heads=kv_kept * group,
                               intermediate_size=max(1, round(spec.intermediate_size * (1 - sparsity))))


@dataclass(frozen=True)
class Candidate:
    """A model as deployed: its shape, and how its weights are stored (see the module docstring)."""
    label: str
    spec: ModelSpec
    kind: str = ""              # "" : "moe" if the spec has experts, else "dense"
    sparsity: float = 0.0       # fraction of the prunable weights removed (structured: of the original model's)
    sparse_kernel: bool = False  # unstructured and 2:4 only: zeros stored compressed and skipped when read

    def __post_init__(self):
        if not self.kind:
            object.__setattr__(self, "kind", "moe" if self.spec.n_experts > 1 else "dense")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        require_sparsity(self.sparsity)
        if self.kind == "2:4" and self.sparsity != 0.5:
            raise ValueError("2:4 pruning removes exactly half of the weights: use sparsity=0.5")
        if self.kind in ("dense", "moe") and self.sparsity:
            raise ValueError(f"a {self.kind} candidate has no sparsity; use prune() for a pruned one")
        if self.sparse_kernel and self.kind not in ("unstructured", "2:4"):
            raise ValueError("sparse_kernel applies to unstructured and 2:4 pruning only: a structured candidate is "
                             "already a smaller dense model")

    @property
    def zeros_fraction(self) -> float:
        """Fraction of the spec's prunable weights that are left out of memory and reads: the sparsity of an
        unstructured or 2:4 candidate when a sparse kernel skips its zeros, else 0 (dense kernels store and read
        the zeros; a structured candidate's spec is already the smaller model)."""
        return self.sparsity if self.sparse_kernel else 0.0

    def _bytes_per_pruned_param(self, bytes_per_param: float) -> float:
        """Stored bytes per prunable parameter of the original matrices."""
        if not self.sparse_kernel:
            return bytes_per_param
        if self.kind == "unstructured":
            return (1 - self.zeros_fraction) * bytes_per_param + BITMASK_BYTES
        return 0.5 * bytes_per_param + 0.5 * TWO_FOUR_INDEX_BYTES           # 2:4

    def n_params(self) -> int:
        """Parameters kept in memory (zeros skipped by a sparse kernel are not kept)."""
        return self.spec.n_params() - round(self.zeros_fraction * prunable_params(self.spec))

    def n_active_params(self) -> int:
        """Parameters one token multiplies by (MoE: only the chosen experts; zeros only where a sparse kernel
        skips them)."""
        spec = self.spec
        active_prunable = spec.block_weight_params(spec.experts_per_token)
        return spec.n_active_params() - round(self.zeros_fraction * active_prunable)

    def weight_bytes(self, precision: str) -> float:
        """Bytes the stored weights take in memory."""
        b = weight_bytes(precision)
        prunable = prunable_params(self.spec)
        return (self.spec.n_params() - prunable) * b + prunable * self._bytes_per_pruned_param(b)

    def weight_bytes_read(self, n_tokens: int, precision: str) -> float:
        """Weight bytes one forward pass over ``n_tokens`` tokens streams: the spec's count (MoE: only the
        experts the tokens pick), with the pruned matrices at their stored size."""
        b = weight_bytes(precision)
        spec = self.spec
        touched = spec.expected_experts_touched(n_tokens)   # 1 for a dense model
        read_prunable = float(spec.block_weight_params(touched))
        return spec.weight_bytes_read(n_tokens, b) - read_prunable * (b - self._bytes_per_pruned_param(b))

    def flops_per_token(self, context_len: int) -> float:
        """Unstructured and 2:4 zeros are counted as multiplied (dense kernels; see the module docstring)."""
        return self.spec.flops_per_token(context_len)


def prune(spec: ModelSpec, kind: str, sparsity: float, label: str | None = None,
          sparse_kernel: bool = False) -> Candidate:
    """``spec`` pruned: ``kind`` one of "unstructured", "2:4" (sparsity must be 0.5), "structured".
    ``sparse_kernel`` (unstructured and 2:4 only): assume a compressed format and a kernel that skips the
    zeros; by default they are stored and multiplied as dense values, as measured in lesson 03b."""
    if kind not in PRUNING_KINDS:
        raise ValueError(f"pruning kind must be one of {', '.join(PRUNING_KINDS)}, got {kind!r}")
    label = label or f"{spec.name} pruned {kind} {sparsity:.0%}"
    if kind == "structured":
        return Candidate(label, structured_spec(spec, sparsity), "structured", sparsity)
    return Candidate(label, spec, kind, sparsity, sparse_kernel)


@dataclass(frozen=True)
class Assessment:
    """One candidate on one device: does it fit, how fast does it decode."""
    candidate: Candidate
    device: HardwareSpec
    budget_bytes: float                 # memory the device leaves for the model
    memory: dict[str, float]            # weights, KV cache
    step: PassCost                      # one decode step (roofline)

    @property
    def memory_fit(self) -> MemoryFit:
        return MemoryFit(self.memory, self.budget_bytes)

    @property
    def memory_needed(self) -> float:
        return self.memory_fit.needed

    @property
    def fits(self) -> bool:
        return self.memory_fit.fits

    @property
    def seconds_per_step(self) -> float:
        return self.step.seconds

    @property
    def tokens_per_second(self) -> float:
        return self.step.tokens_per_second

    def __str__(self) -> str:
        verdict = "fits" if self.fits else "does NOT fit"
        return (f"{self.candidate.label} on {self.device.label}: needs {self.memory_needed / 1e9:.2f} GB of "
                f"{self.budget_bytes / 1e9:.2f} GB ({verdict}); decode {self.seconds_per_step * 1e3:.1f} ms/step "
                f"({self.step.bound}-bound)")


def assess(candidate: Candidate, device: HardwareSpec, precision: str = "int8", context_len: int = 2048,
           batch_size: int = 1, memory_fraction: float = 1.0) -> Assessment:
    """Memory needed (weights + KV cache of ``batch_size`` sequences of ``context_len`` tokens) against the
    ``memory_fraction`` of the device's memory left for the model, and one decode step's roofline time."""
    check_pass(precision, context_len=context_len, batch_size=batch_size)
    if not 0 < memory_fraction <= 1:
        raise ValueError(f"memory_fraction is the share of the device's memory the model may use, in (0, 1]; "
                         f"got {memory_fraction!r}")
    spec = candidate.spec
    memory = {"weights": candidate.weight_bytes(precision),
              "KV cache": spec.kv_cache_bytes(context_len, batch_size, kv_bytes(precision))}
    step = PassCost(phase="decode", model=spec, hardware=device, precision=precision, context_len=context_len,
                    batch_size=batch_size, weight_bytes_read=candidate.weight_bytes_read(batch_size, precision),
                    kv_bytes_read=spec.decode_kv_bytes(context_len, batch_size, kv_bytes(precision)),
                    flops=batch_size * candidate.flops_per_token(context_len), memory=memory)
    return Assessment(candidate, device, memory_fraction * device.memory_bytes, memory, step)
