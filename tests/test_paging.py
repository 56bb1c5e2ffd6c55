"""The paged-optimiser simulation (course_lib.paging): invariants checked from first principles."""
import math

import pytest
import torch

from course_lib.errors import ConfigError
from course_lib.paging import measure_paging_sizes, simulate_paging

PAGE = 1000
RESIDENT = 10_000
STATES = [4 * PAGE, 4 * PAGE]            # two state tensors of four whole pages each
S = sum(STATES)


def test_nothing_is_paged_when_every_step_fits():
    acts = [500, 2000, 1000, 3000]
    capacity = RESIDENT + S + max(acts)   # the largest step fits exactly
    trace = simulate_paging(capacity, RESIDENT, STATES, acts, page_bytes=PAGE)
    assert trace.paged == trace.without == tuple(RESIDENT + S + a for a in acts)
    assert trace.bytes_moved == trace.pages_moved == 0
    assert trace.oom_without == trace.oom_paged == ()


@pytest.mark.parametrize("spike", [1, 999, 1000, 1001, 2500, 7999, 8000])
def test_a_spike_evicts_the_fewest_whole_pages_and_moves_them_twice(spike):
    normal = 1000
    capacity = RESIDENT + S + normal
    acts = [normal, normal + spike, normal, normal + spike, normal]
    trace = simulate_paging(capacity, RESIDENT, STATES, acts, page_bytes=PAGE)
    pages = math.ceil(spike / PAGE)       # overflow of each spike = spike bytes
    assert trace.oom_without == (1, 3)
    assert trace.without[1] == capacity + spike > capacity
    assert trace.oom_paged == ()
    assert max(trace.paged) <= capacity
    assert trace.evicted_pages == (0, pages, 0, pages, 0)
    assert trace.pages_moved == 2 * 2 * pages
    assert trace.bytes_moved == 2 * 2 * pages * PAGE   # out to CPU RAM and back, at each of the two spikes
    assert trace.paged[1] == RESIDENT + S - pages * PAGE + normal + spike
    assert [trace.paged[t] for t in (0, 2, 4)] == [trace.without[t] for t in (0, 2, 4)]


def test_short_last_pages_count_their_real_bytes():
    states = [2500]                       # pages of 1000, 1000, 500
    capacity = RESIDENT + 2500 + 100
    trace = simulate_paging(capacity, RESIDENT, states, [100, 100 + 2400], page_bytes=PAGE)
    assert trace.evicted_pages == (0, 3) and trace.evicted_bytes == (0, 2500)
    assert trace.bytes_moved == 5000 and trace.paged[1] == RESIDENT + 100 + 2400 <= capacity


def test_a_spike_larger_than_all_states_runs_out_of_memory_even_with_paging():
    capacity = RESIDENT + S + 1000
    trace = simulate_paging(capacity, RESIDENT, STATES, [1000, 1000 + S + 1], page_bytes=PAGE)
    assert trace.oom_without == trace.oom_paged == (1,)
    assert trace.evicted_bytes[1] == S and trace.paged[1] == RESIDENT + 1000 + S + 1 > capacity


def test_a_device_smaller_than_the_weights_is_refused():
    with pytest.raises(ConfigError, match="cannot hold the weights") as err:
        simulate_paging(RESIDENT - 1, RESIDENT, STATES, [100], page_bytes=PAGE)
    assert "How to fix" in str(err.value) and f"{RESIDENT:,}" in str(err.value)
    with pytest.raises(ConfigError, match="do not fit"):
        simulate_paging(RESIDENT + S - 1, RESIDENT, STATES, [100], page_bytes=PAGE)
    with pytest.raises(ConfigError):
        simulate_paging(RESIDENT + S, RESIDENT, STATES, [], page_bytes=PAGE)
    with pytest.raises(ConfigError):
        simulate_paging(RESIDENT + S, RESIDENT, STATES, [1], page_bytes=0)


def test_sizes_are_measured_on_the_real_model(tiny_llama):
    model = tiny_llama.requires_grad_(True)
    n = sum(p.numel() for p in model.parameters())
    before = model.model.embed_tokens.weight.detach().clone()
    sizes = measure_paging_sizes(model, [8, 32], batch_size=2)
    # AdamW keeps exp_avg and exp_avg_sq (fp32, one value per parameter) and a scalar step per parameter tensor
    n_tensors = len(list(model.parameters()))
    assert sum(sizes.state_tensors) == 2 * 4 * n + 4 * n_tensors
    assert sizes.gradients == 4 * n and sizes.weights >= 4 * n
    assert 0 < sizes.activations[8] < sizes.activations[32]   # longer sequences keep more activations
    states = sum(sizes.state_tensors)
    room = max(sizes.activations[8], sizes.activations[32] - states // 2)   # the long step overflows by <= S/2
    trace = simulate_paging(sizes.resident + states + room, sizes.resident, sizes.state_tensors,
                            [sizes.activations[8], sizes.activations[32]], page_bytes=4096)
    assert trace.oom_without == (1,) and trace.oom_paged == () and max(trace.paged) <= trace.capacity
    assert 0 < trace.evicted_bytes[1] < states // 2 + 4096 and trace.bytes_moved == 2 * trace.evicted_bytes[1]
    assert torch.equal(before, model.model.embed_tokens.weight)   # the steps ran on copies
