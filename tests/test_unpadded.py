"""Unpadded inference (inference/unpadded.py): a padded batch's real tokens through the encoder layers as one packed
sequence compute what the padded forward computes, for every head and each architecture it claims; a batch without
padding, a request for every layer's output and an unknown architecture keep the model's own path."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

HEADS = [("encoder", "last_hidden_state"), ("sequence-classification", "logits"), ("token-classification", "logits")]


def batch(model_dir, texts):
    from bertcli.inference.encoding import TextEncoder, pad

    return pad(TextEncoder.load(model_dir, 64).encode(texts), range(len(texts)), 0)


TEXTS = ["a short text", "and a somewhat longer second text with more words in it", "mid length here", "x"]


def reference_outputs(model_dir, head, features, output, **options):
    """The plain transformers model (sdpa, padded) on the same weights."""
    from bertcli.inference.torch_backend import load_model

    torch.manual_seed(0)  # a head's random initialisation: the same as the backend's model
    model = load_model(str(model_dir), head).eval()
    with torch.inference_mode():
        result = model(**{k: torch.from_numpy(v) for k, v in features.items()}, **options)
    return result


@pytest.mark.parametrize(("head", "output"), HEADS)
def test_an_unpadded_forward_computes_what_the_padded_one_does_for_every_head(tiny_model, head, output, monkeypatch):
    from bertcli.inference.torch_backend import TorchBackend, load_model

    features = batch(tiny_model, TEXTS)
    real = features["attention_mask"].astype(bool)
    assert not real.all()  # the batch has padding to drop
    torch.manual_seed(0)
    backend = TorchBackend(load_model(str(tiny_model), head), precision="no")
    assert backend.unpadded
    entered = layer_inputs(monkeypatch)
    got = backend.forward(features, (output,))[output]
    assert [shape for shape, _ in entered] == [(real.sum(), 32)]  # the real tokens only, through the packed layers
    expected = reference_outputs(tiny_model, head, features, output)[output].numpy()
    per_token = output == "last_hidden_state" or head == "token-classification"
    np.testing.assert_allclose(got[real] if per_token else got, expected[real] if per_token else expected, atol=2e-5)
    if output == "last_hidden_state":
        assert not got[~real].any()  # padding's rows are zeros, not computed


def test_every_layers_output_stays_padded_and_equal_to_the_models_own(tiny_model):
    from bertcli.inference.torch_backend import TorchBackend, load_model

    features = batch(tiny_model, TEXTS)
    backend = TorchBackend(load_model(str(tiny_model), "encoder"), precision="no")
    got = backend.forward(features, ("last_hidden_state", "hidden_states"))
    expected = reference_outputs(tiny_model, "encoder", features, "hidden_states", output_hidden_states=True)
    assert got["hidden_states"].shape == (4, 3, features["input_ids"].shape[1], 32)  # embeddings + 2 layers
    real = features["attention_mask"].astype(bool)
    for layer, hidden in enumerate(expected.hidden_states):
        np.testing.assert_allclose(got["hidden_states"][:, layer][real], hidden.numpy()[real], atol=2e-5)


def layer_inputs(monkeypatch) -> list[tuple[tuple[int, ...], list[tuple[int, int]]]]:
    """The (shape, runs) of every packed sequence that enters the unpadded layers from now on."""
    from bertcli.inference import unpadded

    seen, real_encode = [], unpadded._encode
    monkeypatch.setattr(
        unpadded, "_encode", lambda encoder, hidden, runs: seen.append((tuple(hidden.shape), runs)) or real_encode(encoder, hidden, runs)
    )  # fmt: skip
    return seen


def test_a_batch_without_padding_computes_what_the_models_own_path_does(tiny_model, monkeypatch):
    from bertcli.inference.torch_backend import TorchBackend, load_model

    features = batch(tiny_model, ["the same text", "the same text"])
    assert features["attention_mask"].all()
    backend = TorchBackend(load_model(str(tiny_model), "encoder"), precision="no")
    entered = layer_inputs(monkeypatch)
    got = backend.forward(features, ("last_hidden_state",))["last_hidden_state"]
    expected = reference_outputs(tiny_model, "encoder", features, "last_hidden_state").last_hidden_state.numpy()
    np.testing.assert_allclose(got, expected, atol=2e-5)
    np.testing.assert_array_equal(got[0], got[1])  # one run of equal lengths: both inputs in one attention call
    width = features["input_ids"].shape[1]
    assert entered == [((2 * width, 32), [(width, 2)])]  # the batch packed as it is, one run


def test_only_the_real_tokens_are_embedded_each_at_its_own_position(tiny_model):
    from bertcli.inference.torch_backend import TorchBackend, load_model

    features = batch(tiny_model, TEXTS)
    real = features["attention_mask"].astype(bool)
    backend = TorchBackend(load_model(str(tiny_model), "encoder"), precision="no")
    embedded = []
    backend.model.embeddings.register_forward_pre_hook(
        lambda module, args, kwargs: embedded.append({k: v.numpy().copy() for k, v in kwargs.items()}), with_kwargs=True
    )
    backend.forward(features, ("last_hidden_state",))
    positions = np.broadcast_to(np.arange(real.shape[1]), real.shape)
    assert len(embedded) == 1
    np.testing.assert_array_equal(embedded[0]["input_ids"], features["input_ids"][real][None])
    np.testing.assert_array_equal(embedded[0]["position_ids"], positions[real][None])
    np.testing.assert_array_equal(embedded[0]["token_type_ids"], features["token_type_ids"][real][None])


@pytest.mark.parametrize("given", ["position_ids", "inputs_embeds"])
def test_a_forward_given_more_than_ids_runs_the_models_own_padded_path(tiny_model, given, monkeypatch):
    from bertcli.inference.torch_backend import load_model
    from bertcli.inference.unpadded import UNPAD, unpad_encoder

    features = {k: torch.from_numpy(v) for k, v in batch(tiny_model, TEXTS).items()}
    model, reference = load_model(str(tiny_model), "encoder").eval(), load_model(str(tiny_model), "encoder").eval()
    assert unpad_encoder(model)
    width = features["input_ids"].shape[1]
    extra = {
        "position_ids": torch.arange(width).flip(0).expand(len(TEXTS), width),  # not the ones the model would count
        "inputs_embeds": reference.embeddings.word_embeddings(features["input_ids"]).detach(),
    }[given]
    if given == "inputs_embeds":
        features.pop("input_ids")
    entered = layer_inputs(monkeypatch)
    with torch.inference_mode():
        got = model(**features, **{given: extra, UNPAD: True}).last_hidden_state
        expected = reference(**features, **{given: extra}).last_hidden_state
    real = features["attention_mask"].bool()
    torch.testing.assert_close(got[real], expected[real], atol=2e-5, rtol=1e-4)
    assert entered == []  # the packed layers never ran


def test_packed_attention_equals_each_inputs_own_attention_and_the_masked_padded_one():
    from bertcli.inference.packed_layers import packed_attention
    from bertcli.inference.unpadded import _runs

    torch.manual_seed(0)
    lengths = [3, 3, 7, 1, 1, 1, 5]  # runs of one length attend in one call
    assert _runs(lengths) == [(3, 2), (7, 1), (1, 3), (5, 1)]
    query, key, value = (torch.randn(sum(lengths), 2, 8) for _ in range(3))  # (tokens, heads, head width)
    packed = packed_attention(query, key, value, _runs(lengths), 0.3)
    assert packed.shape == (sum(lengths), 16)  # (tokens, width): the next linear layer's input
    start = 0
    for length in lengths:  # one input alone: its tokens see only each other
        span = slice(start, start + length)
        alone = torch.nn.functional.scaled_dot_product_attention(
            *(t[span].transpose(0, 1) for t in (query, key, value)), scale=0.3
        )
        torch.testing.assert_close(packed[span], alone.transpose(0, 1).reshape(length, 16))
        start += length
    width = max(lengths)  # the same inputs padded, attending under their padding mask
    padded = [torch.zeros(len(lengths), 2, width, 8) for _ in range(3)]
    mask = torch.zeros(len(lengths), width, dtype=torch.bool)
    start = 0
    for row, length in enumerate(lengths):
        for tensor, source in zip(padded, (query, key, value)):
            tensor[row, :, :length] = source[start : start + length].transpose(0, 1)
        mask[row, :length] = True
        start += length
    masked = torch.nn.functional.scaled_dot_product_attention(*padded, attn_mask=mask[:, None, None, :], scale=0.3)
    torch.testing.assert_close(masked.transpose(1, 2)[mask].flatten(1), packed)


def test_the_fused_projection_computes_query_key_and_value_side_by_side(tiny_model):
    from bertcli.inference.torch_backend import load_model
    from bertcli.inference.unpadded import unpad_encoder

    model = load_model(str(tiny_model), "encoder").eval()
    assert unpad_encoder(model)
    attention, fused = model.encoder.layer[1].attention.self, model.encoder.bertcli_qkv[1]
    hidden = torch.randn(5, 32)
    with torch.inference_mode():
        expected = torch.cat([attention.query(hidden), attention.key(hidden), attention.value(hidden)], dim=1)
        torch.testing.assert_close(fused(hidden), expected)


def test_a_fused_projection_without_biases_has_none():
    from types import SimpleNamespace

    from bertcli.inference.unpadded import _fused_projection

    torch.manual_seed(0)
    attention = SimpleNamespace(query=torch.nn.Linear(8, 8, bias=False), key=torch.nn.Linear(8, 8, bias=False),
                                value=torch.nn.Linear(8, 8, bias=False))  # fmt: skip
    fused, hidden = _fused_projection(attention), torch.randn(3, 8)
    assert fused.bias is None
    with torch.inference_mode():
        expected = torch.cat([attention.query(hidden), attention.key(hidden), attention.value(hidden)], dim=1)
        torch.testing.assert_close(fused(hidden), expected)


@pytest.mark.parametrize("model_type", ["bert", "roberta", "xlm-roberta", "camembert", "electra"])
def test_each_claimed_architecture_computes_the_same_unpadded(model_type):
    from transformers import AutoConfig, AutoModel

    from bertcli.inference.unpadded import unpad_encoder

    config = AutoConfig.for_model(
        model_type, vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64, pad_token_id=1,
    )  # fmt: skip
    torch.manual_seed(0)
    model, reference = AutoModel.from_config(config).eval(), AutoModel.from_config(config).eval()
    reference.load_state_dict(model.state_dict())
    assert unpad_encoder(model)
    assert_unpadded_computes_the_padded_output(model, reference, pad_id=1)


def assert_unpadded_computes_the_padded_output(model, reference, pad_id: int) -> None:
    """`model` (unpadded) gives every real token of a padded batch what `reference` (its own path, the same weights)
    gives it."""
    from bertcli.inference.unpadded import UNPAD

    mask = torch.tensor([[1] * 9, [1] * 4 + [0] * 5, [1] * 6 + [0] * 3])
    ids = torch.randint(5, 99, mask.shape).masked_fill(mask == 0, pad_id)
    with torch.inference_mode():
        got = model(input_ids=ids, attention_mask=mask, **{UNPAD: True})
        expected = reference(input_ids=ids, attention_mask=mask)
    real = mask.bool()
    torch.testing.assert_close(got.last_hidden_state[real], expected.last_hidden_state[real], atol=2e-5, rtol=1e-4)
    if getattr(reference, "pooler", None) is not None:  # it reads each input's first token
        torch.testing.assert_close(got.pooler_output, expected.pooler_output, atol=2e-5, rtol=1e-4)


def test_an_architecture_it_does_not_know_keeps_its_own_path():
    from transformers import DistilBertConfig, DistilBertModel

    from bertcli.inference.torch_backend import TorchBackend
    from bertcli.inference.unpadded import unpad_encoder

    config = DistilBertConfig(vocab_size=99, dim=32, n_layers=1, n_heads=4, hidden_dim=64, max_position_embeddings=64)
    model = DistilBertModel(config).eval()
    assert not unpad_encoder(model) and "forward" not in vars(model)  # its own forward, untouched
    backend = TorchBackend(model, precision="no")
    features = {"input_ids": np.array([[5, 6, 7], [8, 9, 0]]), "attention_mask": np.array([[1, 1, 1], [1, 1, 0]])}
    assert not backend.unpadded
    assert backend.forward(features, ("last_hidden_state",))["last_hidden_state"].shape == (2, 3, 32)


def test_packed_rows_grow_to_few_sizes_by_at_most_an_eighth():
    from bertcli.inference.unpadded import packed_rows

    assert [packed_rows(n) for n in (1, 16, 17, 20, 129, 300, 1000, 1025, 2048)] == [
        16, 16, 32, 32, 144, 320, 1024, 1152, 2048,
    ]  # fmt: skip
    sizes = {packed_rows(n) for n in range(1, 4097)}
    assert all(size % 16 == 0 for size in sizes) and len(sizes) == 48  # 8 up to 128, then 8 per doubling
    assert all(n <= packed_rows(n) <= max(n + 15, n * 9 / 8) for n in range(1, 4097))


@pytest.mark.parametrize("padded", [True, False])
def test_rows_grown_for_onednn_change_no_real_tokens_output(tiny_model, padded, monkeypatch):
    """Grown rows are zeros that no input attends to: each real token's output is the ungrown forward's."""
    from bertcli.inference.torch_backend import load_model
    from bertcli.inference.unpadded import UNPAD, packed_rows, unpad_encoder

    features = batch(tiny_model, TEXTS if padded else ["the same text"] * 3)
    tensors = {k: torch.from_numpy(v) for k, v in features.items()}
    real = features["attention_mask"].astype(bool)
    grown, plain = load_model(str(tiny_model), "encoder").eval(), load_model(str(tiny_model), "encoder").eval()
    assert unpad_encoder(grown, round_rows=True) and unpad_encoder(plain)
    entered = layer_inputs(monkeypatch)
    with torch.inference_mode():
        got = grown(**tensors, **{UNPAD: True}).last_hidden_state.numpy()
        expected = plain(**tensors, **{UNPAD: True}).last_hidden_state.numpy()
    rows = [shape[0] for shape, _ in entered]
    assert rows == [packed_rows(int(real.sum())), real.sum()] and rows[0] > real.sum()
    np.testing.assert_allclose(got[real], expected[real], atol=1e-6)
    assert got.shape == expected.shape and not got[~real].any()  # padding's rows (when padded) stay zero


def test_only_a_reduced_precision_backend_grows_its_rows(tiny_model, monkeypatch):
    from bertcli.inference.torch_backend import TorchBackend, load_model
    from bertcli.inference.unpadded import packed_rows

    features = batch(tiny_model, TEXTS)
    count = int(features["attention_mask"].sum())
    assert packed_rows(count) > count  # else growing and not growing would look alike
    entered = layer_inputs(monkeypatch)
    for precision in ("bf16", "no"):
        TorchBackend(load_model(str(tiny_model), "encoder"), precision=precision).forward(
            features, ("last_hidden_state",)
        )
    assert [shape[0] for shape, _ in entered] == [packed_rows(count), count]


def compiled_calls(monkeypatch) -> list[bool]:
    """One entry per call of the compiled layers from now on (the eager loop is not counted): whether autocast was
    on during the call (it must not be: TorchScript would add casts of its own)."""
    from bertcli.inference import packed_layers

    calls, compiled = [], packed_layers.compiled_layers()
    assert compiled is not None  # this torch compiles them
    monkeypatch.setattr(
        packed_layers,
        "compiled_layers",
        lambda: lambda *args: calls.append(torch.is_autocast_enabled("cpu")) or compiled(*args),
    )
    return calls


@pytest.mark.parametrize("precision", ["no", "bf16"])
def test_the_compiled_layers_compute_bit_for_bit_what_the_eager_loop_does(tiny_model, precision, monkeypatch):
    """Compiled where every dtype is explicit (fp32, or linears packed for bf16 on a CPU with native bf16: CI runs
    both probe settings); linears that autocast casts run eagerly. Either way, the same bits."""
    from bertcli.inference import packed_layers
    from bertcli.inference.torch_backend import TorchBackend, load_model

    features = batch(tiny_model, TEXTS)
    backend = TorchBackend(load_model(str(tiny_model), "encoder"), precision=precision)
    calls = compiled_calls(monkeypatch)
    got = backend.forward(features, ("last_hidden_state",))["last_hidden_state"]
    weights = backend.model.encoder.bertcli_layers
    assert weights.packed == (precision == "bf16" and hasattr(backend.model.encoder.bertcli_qkv[0], "bertcli_packed"))
    assert calls == ([False] if weights.packed or precision == "no" else [])  # compiled, outside autocast
    monkeypatch.setattr(packed_layers, "compiled_layers", lambda: None)
    eager = backend.forward(features, ("last_hidden_state",))["last_hidden_state"]
    np.testing.assert_array_equal(got, eager)


def test_fp32_weights_under_autocast_run_eagerly_so_autocast_casts_them(tiny_model, monkeypatch):
    from bertcli.inference.torch_backend import load_model
    from bertcli.inference.unpadded import UNPAD, unpad_encoder

    model = load_model(str(tiny_model), "encoder").eval()
    assert unpad_encoder(model)
    tensors = {k: torch.from_numpy(v) for k, v in batch(tiny_model, TEXTS).items()}
    calls = compiled_calls(monkeypatch)
    with torch.inference_mode():
        plain = model(**tensors, **{UNPAD: True}).last_hidden_state
        with torch.autocast("cpu", dtype=torch.bfloat16):
            cast = model(**tensors, **{UNPAD: True}).last_hidden_state
    assert calls == [False]  # the fp32 forward only
    real = tensors["attention_mask"].bool()
    assert not torch.equal(cast[real].float(), plain[real])  # bf16 arithmetic: autocast did cast
    torch.testing.assert_close(cast[real].float(), plain[real], atol=0.1, rtol=0.05)


def test_without_torchscript_the_layers_run_eagerly_with_the_same_results(tiny_model, monkeypatch, bertcli_log):
    from bertcli.inference import packed_layers
    from bertcli.inference.torch_backend import TorchBackend, load_model

    def unavailable(function):
        raise RuntimeError("TorchScript is not available in this build")

    features = batch(tiny_model, TEXTS)
    backend = TorchBackend(load_model(str(tiny_model), "encoder"), precision="no")
    compiled = backend.forward(features, ("last_hidden_state",))["last_hidden_state"]
    assert packed_layers.compiled_layers() is not None
    packed_layers.compiled_layers.cache_clear()
    monkeypatch.setattr(torch.jit, "script", unavailable)
    try:
        eager = backend.forward(features, ("last_hidden_state",))["last_hidden_state"]
        assert packed_layers.compiled_layers() is None
    finally:
        packed_layers.compiled_layers.cache_clear()  # the next caller compiles again, with the real torch.jit.script
    assert "TorchScript cannot compile them (TorchScript is not available in this build)" in bertcli_log.text
    np.testing.assert_array_equal(eager, compiled)


@pytest.mark.parametrize("activation", ["gelu", "gelu_pytorch_tanh", "relu", "gelu_new"])
def test_the_unpadded_layers_compute_each_activation_they_claim_and_leave_others_alone(activation):
    from transformers import BertConfig, BertModel

    from bertcli.inference.packed_layers import ACTIVATIONS
    from bertcli.inference.unpadded import unpad_encoder

    config = BertConfig(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
                        max_position_embeddings=64, hidden_act=activation)  # fmt: skip
    torch.manual_seed(0)
    model, reference = BertModel(config).eval(), BertModel(config).eval()
    reference.load_state_dict(model.state_dict())
    claimed = unpad_encoder(model)
    assert claimed == (activation in ACTIVATIONS)
    if not claimed:
        assert "forward" not in vars(model) and not hasattr(model.encoder, "bertcli_qkv")  # untouched
        return
    assert_unpadded_computes_the_padded_output(model, reference, pad_id=0)
