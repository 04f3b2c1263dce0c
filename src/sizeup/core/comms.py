"""Collective communication time over a two-tier network (NVLink/PCIe inside a node, NICs between nodes).

Array-agnostic: group sizes, payloads and bandwidths may be numpy arrays or numbers.

Ring formulas (nccl-tests PERFORMANCE.md "bus bandwidth"; Thakur et al. 2005), n ranks, payload S bytes
(S is the full buffer: the all-reduce input, the all-gather output, the reduce-scatter input):
  all-reduce      2 (n-1)/n * S / B
  all-gather      (n-1)/n * S / B
  reduce-scatter  (n-1)/n * S / B
  all-to-all      (n-1)/n * S / B        (each rank keeps 1/n of its buffer)
  p2p send        S / B
A group spanning `nodes` nodes with `k` ranks per node runs hierarchically (NCCL tree/ring over
nodes, ring inside): the inside tier moves the full S among k ranks over NVLink, the outside tier moves
S/k per GPU over that GPU's own NIC (rail-aligned NICs: each GPU has inter_node_bytes_per_s).
B = link bytes/s per direction x collective efficiency (busbw / wire, catalog). Latency: alpha per ring step.
"""

from __future__ import annotations

import numpy as np

from sizeup.core.explain import Term

# factor on S/B per collective kind for the ring algorithm (nccl-tests PERFORMANCE.md)
RING_FACTOR = {"all-reduce": 2.0, "all-gather": 1.0, "reduce-scatter": 1.0, "all-to-all": 1.0, "p2p": 1.0}


def group_layout(size, stride, node_size):
    """Ranks per node `k` and nodes `nn` spanned by a group of `size` ranks spaced `stride` apart.

    Megatron rank order: tp fastest, then cp, ep/dp, pp (Megatron-LM parallel_state.py `order='tp-cp-ep-dp-pp'`).
    A group with stride s packs floor(node_size / s) ranks per node (at least 1).
    """
    size = np.maximum(size, 1)
    per_node = np.maximum(np.floor(node_size / np.maximum(stride, 1)), 1)
    k = np.minimum(size, per_node)
    nn = np.ceil(size / k)
    return k, nn


def collective_time(kind: str, payload_bytes, size, stride, node_size, intra_bytes_per_s, inter_bytes_per_s,
                    intra_eff, inter_eff, latency_s):
    """Seconds for one collective of `payload_bytes` over `size` ranks (hierarchical two-tier ring).

    inside:  f*(k-1)/k * S / (B_intra*eff_intra)         (k ranks per node)
    outside: f*(nn-1)/nn * (S/k) / (B_inter*eff_inter)   (nn nodes, each GPU's NIC carries 1/k of S)
    latency: alpha * (f*(k-1) + f*ceil(log2 nn))          (ring inside, tree across nodes; NCCL)
    f = 2 for all-reduce, 1 otherwise. p2p: S / B of the tier it crosses.
    """
    f = RING_FACTOR[kind]
    size = np.maximum(size, 1)
    k, nn = group_layout(size, stride, node_size)
    b_in = np.maximum(intra_bytes_per_s * intra_eff, 1.0)
    b_out = np.maximum(inter_bytes_per_s * inter_eff, 1.0)
    if kind == "p2p":
        # a stage boundary crosses a node when stride >= node_size
        crosses = np.asarray(stride) >= node_size
        t = np.where(crosses, payload_bytes / b_out, payload_bytes / b_in) + latency_s
        return np.where(size > 1, t, 0.0)
    if kind == "all-to-all":
        # every rank sends (n-1)/n of S; the share bound for other nodes goes over the NICs
        t_in = (k - 1) / size * payload_bytes / b_in
        t_out = (size - k) / size * payload_bytes / b_out
        t = np.maximum(t_in, t_out) + latency_s * (k - 1 + np.ceil(np.log2(np.maximum(nn, 1))))
        return np.where(size > 1, t, 0.0)
    t_in = f * (k - 1) / k * payload_bytes / b_in
    t_out = f * (nn - 1) / nn * (payload_bytes / k) / b_out
    steps = f * (k - 1) + f * np.ceil(np.log2(np.maximum(nn, 1)))
    return np.where(size > 1, t_in + t_out + latency_s * steps, 0.0)


def ring_coefficients(size, stride, node_size, intra_bytes_per_s, inter_bytes_per_s, intra_eff, inter_eff, latency_s):
    """(seconds per byte, seconds of latency) of a ring pass with f = 1 over the two-tier layout.

    collective_time(kind) = f * (per_byte * S + latency) for all-reduce (f=2), all-gather/reduce-scatter (f=1):
    lets one group layout serve several collectives (the plan search evaluates ~1e6 plans at once).
    """
    k, nn = group_layout(size, stride, node_size)
    b_in = np.maximum(intra_bytes_per_s * intra_eff, 1.0)
    b_out = np.maximum(inter_bytes_per_s * inter_eff, 1.0)
    per_byte = (k - 1) / k / b_in + (nn - 1) / nn / (k * b_out)
    latency = latency_s * ((k - 1) + np.ceil(np.log2(np.maximum(nn, 1))))
    return per_byte, latency


def bus_bandwidth(kind: str, payload_bytes: float, size: int, seconds: float) -> float:
    """nccl-tests busbw = algbw * factor: all-reduce 2(n-1)/n, all-gather/reduce-scatter (n-1)/n."""
    if seconds <= 0 or size <= 1:
        return 0.0
    return payload_bytes / seconds * RING_FACTOR[kind] * (size - 1) / size


def collective_term(name: str, kind: str, payload_bytes: float, size: int, stride: int, node_size: int,
                    intra: float, inter: float, intra_eff: float, inter_eff: float, latency_s: float,
                    count: float = 1.0, source: str = "") -> Term:
    t = float(collective_time(kind, payload_bytes, size, stride, node_size, intra, inter, intra_eff, inter_eff,
                              latency_s))
    k, nn = group_layout(size, stride, node_size)
    return Term(name, t * count, "s",
                f"{count:g} x {kind}: {RING_FACTOR[kind]:g}*(k-1)/k*S/(B_intra*eff) + "
                f"{RING_FACTOR[kind]:g}*(nn-1)/nn*(S/k)/(B_inter*eff) + alpha*steps",
                {"S_bytes": payload_bytes, "n": size, "k_per_node": int(k), "nodes": int(nn), "B_intra": intra,
                 "B_inter": inter, "eff_intra": intra_eff, "eff_inter": inter_eff, "alpha_s": latency_s},
                source or "nccl-tests PERFORMANCE.md ring formulas; hierarchical two-tier layout")
