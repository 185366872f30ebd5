"""Random-bits dropout (training on a CPU): torch's dropout in distribution, scale and gradient, at a quarter of the
cost (measured in training/model_settings.py's cpu_training_kernels)."""

from __future__ import annotations

import pytest
import torch

from bertcli.training.dropout import LEVELS, cpu_dropout, cpu_training_attention


@pytest.mark.parametrize("p", [0.1, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dropout_keeps_each_element_with_probability_1_minus_p_and_scales_it_as_torch_does(p, dtype):
    torch.manual_seed(0)
    x = torch.ones(400, 1001, dtype=dtype)  # an odd element count: the last int32 word is half used
    dropped = cpu_dropout(x, p, training=True)
    kept = dropped != 0
    share = kept.float().mean().item()
    assert abs(share - (1 - round(p * LEVELS) / LEVELS)) < 4 * (p * (1 - p) / x.numel()) ** 0.5  # 4 sigma
    expected = torch.tensor(1 / (1 - p), dtype=dtype)
    assert torch.equal(dropped[kept], expected.expand(int(kept.sum())))
    assert dropped.dtype == dtype
    # neighbouring elements (the two half-words of one random word) are independent
    pairs = kept[:, 0:-1:2].float() * kept[:, 1::2].float()
    assert abs(pairs.mean().item() - share**2) < 0.01


def test_dropout_gradient_is_the_mask_times_the_scale_and_no_dropout_when_not_training():
    torch.manual_seed(1)
    x = torch.randn(64, 33, requires_grad=True)
    y = cpu_dropout(x, 0.2, training=True)
    y.backward(torch.full_like(y, 3.0))
    mask = (y != 0).float()
    torch.testing.assert_close(x.grad, 3.0 * mask / 0.8)
    torch.testing.assert_close(y, x.detach() * mask / 0.8)
    assert cpu_dropout(x, 0.2, training=False) is x
    assert torch.equal(cpu_dropout(x, 0.0, training=True), x)


def test_the_same_seed_draws_the_same_mask_and_the_next_draw_differs():
    torch.manual_seed(7)
    first, second = cpu_dropout(torch.ones(1000), 0.3, True), cpu_dropout(torch.ones(1000), 0.3, True)
    torch.manual_seed(7)
    assert torch.equal(cpu_dropout(torch.ones(1000), 0.3, True), first)
    assert not torch.equal(first, second)


def test_attention_is_transformers_eager_attention_and_drops_its_probabilities():
    from transformers.models.bert.modeling_bert import eager_attention_forward

    torch.manual_seed(2)
    query, key, value = (torch.randn(2, 4, 9, 8) for _ in range(3))
    mask = torch.zeros(2, 1, 9, 9)
    mask[1, :, :, 6:] = torch.finfo(torch.float32).min  # padding
    module = torch.nn.Module().eval()
    ours = cpu_training_attention(module, query, key, value, mask, dropout=0.1)
    theirs = eager_attention_forward(module, query, key, value, mask, dropout=0.1)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
    module.train()
    output, weights = cpu_training_attention(module, query, key, value, mask, dropout=0.5)
    dropped = (weights == 0) & (theirs[1] > 0)
    assert 0.3 < dropped.float().mean().item() < 0.7
    torch.testing.assert_close(output, torch.matmul(weights, value).transpose(1, 2))


def test_under_autocast_attention_keeps_the_query_precision_with_an_fp32_softmax():
    from transformers.models.bert.modeling_bert import eager_attention_forward

    torch.manual_seed(4)
    query, key, value = (torch.randn(2, 4, 16, 8) for _ in range(3))
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, :, 10:] = torch.finfo(torch.float32).min
    module = torch.nn.Module().eval()
    expected, _ = eager_attention_forward(module, query, key, value, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output, weights = cpu_training_attention(module, query.bfloat16(), key.bfloat16(), value.bfloat16(), mask)
    assert weights.dtype == output.dtype == torch.bfloat16
    assert torch.all(weights[0, :, :, 10:] == 0)  # the padding is masked in bf16 too
    torch.testing.assert_close(weights.float().sum(-1), torch.ones(2, 4, 16), atol=2e-2, rtol=0)
    torch.testing.assert_close(output.float(), expected, atol=3e-2, rtol=3e-2)
