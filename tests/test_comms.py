"""Collective times: nccl-tests ring formulas, two-tier layout, array inputs."""

import numpy as np
import pytest

from sizeup.core.comms import bus_bandwidth, collective_time, group_layout

GB = 1e9
NET = dict(node_size=8, intra_bytes_per_s=300 * GB, inter_bytes_per_s=25 * GB, intra_eff=0.8, inter_eff=0.75,
           latency_s=0.0)


def test_ring_allreduce_inside_a_node():
    # nccl-tests PERFORMANCE.md: all-reduce moves 2(n-1)/n * S per rank
    S, n = 1e9, 8
    t = collective_time("all-reduce", S, n, 1, **NET)
    assert t == pytest.approx(2 * (n - 1) / n * S / (300 * GB * 0.8))
    # busbw recovers the effective link bandwidth
    assert bus_bandwidth("all-reduce", S, n, float(t)) == pytest.approx(300 * GB * 0.8)


def test_allgather_and_reduce_scatter_are_half_an_allreduce():
    S, n = 4e8, 4
    ar = collective_time("all-reduce", S, n, 1, **NET)
    ag = collective_time("all-gather", S, n, 1, **NET)
    rs = collective_time("reduce-scatter", S, n, 1, **NET)
    assert ag == pytest.approx(ar / 2) and rs == pytest.approx(ar / 2)


def test_two_tier_allreduce_by_hand():
    # 32 ranks, stride 1: 8 per node, 4 nodes; inside: 2*7/8*S/B_in; outside: 2*3/4*(S/8)/B_out
    S = 1e9
    k, nn = group_layout(32, 1, 8)
    assert (k, nn) == (8, 4)
    t = collective_time("all-reduce", S, 32, 1, **NET)
    expected = 2 * 7 / 8 * S / (300 * GB * 0.8) + 2 * 3 / 4 * (S / 8) / (25 * GB * 0.75)
    assert t == pytest.approx(expected)


def test_strided_group_crosses_nodes():
    # a DP group of 4 with stride 8 (TP=8 inside the node) has one rank per node: all traffic on the NICs
    k, nn = group_layout(4, 8, 8)
    assert (k, nn) == (1, 4)
    t = collective_time("all-reduce", 1e9, 4, 8, **NET)
    assert t == pytest.approx(2 * 3 / 4 * 1e9 / (25 * GB * 0.75))


def test_single_rank_and_latency():
    assert collective_time("all-reduce", 1e9, 1, 1, **NET) == 0.0
    lat = dict(NET, latency_s=10e-6)
    t0 = collective_time("all-reduce", 0.0, 8, 1, **lat)
    assert t0 == pytest.approx(10e-6 * 2 * 7)  # alpha * 2(n-1) ring steps


def test_array_inputs_match_scalars():
    sizes = np.array([1, 2, 8, 16, 64])
    arr = collective_time("all-reduce", 5e8, sizes, 2, **NET)
    for i, n in enumerate(sizes):
        assert arr[i] == pytest.approx(float(collective_time("all-reduce", 5e8, int(n), 2, **NET)))


def test_p2p_and_all_to_all():
    assert collective_time("p2p", 1e8, 2, 8, **NET) == pytest.approx(1e8 / (25 * GB * 0.75))  # crosses nodes
    assert collective_time("p2p", 1e8, 2, 1, **NET) == pytest.approx(1e8 / (300 * GB * 0.8))
    # all-to-all inside a node: (n-1)/n of the buffer leaves each rank
    assert collective_time("all-to-all", 8e8, 8, 1, **NET) == pytest.approx(7 / 8 * 8e8 / (300 * GB * 0.8))


def test_ring_coefficients_agree_with_collective_time():
    from sizeup.core.comms import ring_coefficients

    lat = dict(NET, latency_s=5e-6)
    for n, stride in ((1, 1), (4, 1), (8, 2), (32, 1), (16, 8)):
        per_byte, latency = ring_coefficients(n, stride, **lat)
        S = 3e8
        assert 2 * (per_byte * S + latency) == pytest.approx(float(collective_time("all-reduce", S, n, stride, **lat)))
        assert per_byte * S + latency == pytest.approx(float(collective_time("all-gather", S, n, stride, **lat)))
