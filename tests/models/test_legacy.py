"""Loading legacy TransformerLens checkpoints (Nanda's / ARENA's layout) into HookedOneLayerTransformer."""

from __future__ import annotations

import collections

import pytest
import torch

import mi_margin as mm
from mi_margin.errors import CheckpointError, MiMarginError

P = 7


def legacy_state(seed: int = 1, d_vocab_out: int = P + 1, biases: bool = True) -> dict[str, torch.Tensor]:
    """A state dict as TransformerLens's HookedTransformer saved it: our weights (same names and
    shapes) plus its attention buffers, with random biases and Nanda's p + 1 outputs."""
    cfg = mm.TransformerConfig(d_vocab=P + 1, d_vocab_out=d_vocab_out, d_model=16, n_heads=2,
                               d_head=4, d_mlp=32, use_biases=True, seed=seed)
    state = dict(mm.HookedOneLayerTransformer(cfg).state_dict())
    gen = torch.Generator().manual_seed(seed)
    for name in state:
        if ".b_" in name:
            state[name] = torch.randn(state[name].shape, generator=gen) if biases else state[name] * 0
    state["blocks.0.attn.mask"] = torch.tril(torch.ones(3, 3, dtype=torch.bool))
    state["blocks.0.attn.IGNORE"] = torch.tensor(-1e5)
    return state


def tl_config(**changes):
    base = {"n_layers": 1, "d_model": 16, "d_head": 4, "n_heads": 2, "d_mlp": 32, "d_vocab": P + 1,
            "d_vocab_out": P + 1, "n_ctx": 3, "act_fn": "relu", "normalization_type": None}
    return {**base, **changes}


def reference_logits(state: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """The one-layer attention-then-MLP forward pass written out from the legacy weights."""
    s = state
    x = s["embed.W_E"][tokens] + s["pos_embed.W_pos"][None]
    q = torch.einsum("bpd,hde->bphe", x, s["blocks.0.attn.W_Q"]) + s["blocks.0.attn.b_Q"]
    k = torch.einsum("bpd,hde->bphe", x, s["blocks.0.attn.W_K"]) + s["blocks.0.attn.b_K"]
    v = torch.einsum("bpd,hde->bphe", x, s["blocks.0.attn.W_V"]) + s["blocks.0.attn.b_V"]
    scores = torch.einsum("bqhe,bkhe->bhqk", q, k) / q.shape[-1] ** 0.5
    scores = scores.masked_fill(~torch.tril(torch.ones(3, 3, dtype=torch.bool)), float("-inf"))
    z = torch.einsum("bhqk,bkhe->bqhe", scores.softmax(-1), v)
    x = x + torch.einsum("bqhe,hed->bqd", z, s["blocks.0.attn.W_O"]) + s["blocks.0.attn.b_O"]
    hidden = torch.relu(x @ s["blocks.0.mlp.W_in"] + s["blocks.0.mlp.b_in"])
    x = x + hidden @ s["blocks.0.mlp.W_out"] + s["blocks.0.mlp.b_out"]
    return (x @ s["unembed.W_U"] + s["unembed.b_U"])[:, -1]


TOKENS = torch.tensor([[a, b, P] for a in range(P) for b in range(P)])


@pytest.mark.parametrize("layout", ["bare", "nested", "state_dict", "list"])
def test_every_layout_loads_and_computes_the_legacy_forward_pass(tmp_path, layout):
    state = legacy_state()
    obj = {"bare": state, "nested": {"model": state, "config": tl_config()},
           "state_dict": {"state_dict": state},
           "list": {"state_dicts": [legacy_state(seed=5), state], "config": tl_config(),
                    "train_losses": [1.0, 0.5]}}[layout]
    path = tmp_path / "run.pth"
    torch.save(obj, path)
    model = mm.load_tl_checkpoint(path)
    assert not model.training and model.cfg.use_biases and model.cfg.d_vocab_out == P + 1
    with torch.no_grad():
        torch.testing.assert_close(model.last_logits(TOKENS), reference_logits(state, TOKENS))


def test_drop_the_equals_output_and_analyse_as_the_task(tmp_path):
    """Nanda's p + 1 outputs: keep the p answer columns, then the model fits ModularAddition(p)."""
    state = legacy_state(biases=False)
    torch.save({"model": state, "config": tl_config()}, tmp_path / "nanda.pth")
    model = mm.load_tl_checkpoint(tmp_path / "nanda.pth", d_vocab_out=P)
    assert not model.cfg.use_biases and model.cfg.d_vocab_out == P
    with torch.no_grad():
        torch.testing.assert_close(model.last_logits(TOKENS), reference_logits(state, TOKENS)[:, :P])
    mm.key_frequencies(model, mm.ModularAddition(p=P))      # runs: the shapes fit the task


def test_list_index_picks_that_checkpoint(tmp_path):
    states = [legacy_state(seed=s) for s in (2, 3, 4)]
    torch.save({"state_dicts": states}, tmp_path / "full_run_data.pth")
    model = mm.load_tl_checkpoint(tmp_path / "full_run_data.pth", index=1)
    torch.testing.assert_close(model.embed.W_E, states[1]["embed.W_E"])
    with pytest.raises(CheckpointError, match="index=3 is out of range for 3"):
        mm.load_tl_checkpoint(tmp_path / "full_run_data.pth", index=3)


class Opaque:
    """Any Python object: unpickling it would run arbitrary code in general."""


def test_refuses_files_that_need_unpickling(tmp_path):
    torch.save({"model": legacy_state(), "cfg": Opaque()}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="refusing to load"):
        mm.load_tl_checkpoint(tmp_path / "pickled.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        mm.load_tl_checkpoint(tmp_path / "junk.pth")
    with pytest.raises(CheckpointError, match="no checkpoint file"):
        mm.load_tl_checkpoint(tmp_path / "missing.pth")


@pytest.mark.parametrize(("change", "message"), [
    (lambda s, c: s.update({"blocks.0.ln1.w": torch.ones(16), "blocks.0.ln1.b": torch.zeros(16)}),
     "LayerNorm"),
    (lambda s, c: c.update({"normalization_type": "LN"}), "LayerNorm"),
    (lambda s, c: s.update({"blocks.1.attn.W_Q": s["blocks.0.attn.W_Q"]}), "one layer"),
    (lambda s, c: s.pop("blocks.0.mlp.W_in"), "missing keys"),
    (lambda s, c: s.pop("blocks.0.mlp.W_out"), "missing weights"),
    (lambda s, c: s.update({"blocks.0.attn.W_Z": torch.zeros(2)}), "unexpected keys"),
    (lambda s, c: c.update({"d_mlp": 64}), "d_mlp=64 but the weights give d_mlp=32"),
    (lambda s, c: s.update({"blocks.0.attn.W_O": torch.zeros(2, 5, 16)}), "blocks.0.attn.W_O"),
    (lambda s, c: s.update({"pos_embed.W_pos": torch.zeros(3, 17)}), "pos_embed.W_pos"),
])
def test_mismatched_configuration_is_a_clear_error(tmp_path, change, message):
    state, config = legacy_state(), tl_config()
    change(state, config)
    torch.save({"model": state, "config": config}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError, match=message):
        mm.load_tl_checkpoint(tmp_path / "bad.pth")


def test_not_a_state_dict(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a state dict"):
        mm.load_tl_checkpoint(tmp_path / "list.pth")
    torch.save({"epoch": 3, "losses": [1.0]}, tmp_path / "meta.pth")
    with pytest.raises(CheckpointError, match="no state dict found"):
        mm.load_tl_checkpoint(tmp_path / "meta.pth")
    torch.save(collections.OrderedDict(legacy_state()), tmp_path / "ordered.pth")
    assert isinstance(mm.load_tl_checkpoint(tmp_path / "ordered.pth"), mm.HookedOneLayerTransformer)


def test_unknown_activation_names_the_valid_ones(tmp_path):
    torch.save({"model": legacy_state(), "config": tl_config(act_fn="gelu_new")}, tmp_path / "g.pth")
    with pytest.raises(MiMarginError, match="act_fn must be one of"):
        mm.load_tl_checkpoint(tmp_path / "g.pth")


def original_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``legacy_state``'s weights as Nanda et al.'s own grokking code stores them (its
    ``Transformer``: W_E [d_model, d_vocab], W_Q/W_K/W_V [H, d_head, d_model], W_O
    [d_model, H·d_head] heads major, W_in [d_mlp, d_model], W_out [d_model, d_mlp]; no attention
    or unembedding biases), with its float mask buffer."""
    s = state
    H, d_model, d_head = s["blocks.0.attn.W_Q"].shape
    return {"embed.W_E": s["embed.W_E"].T.clone(), "pos_embed.W_pos": s["pos_embed.W_pos"],
            **{f"blocks.0.attn.W_{n}": torch.einsum("hde->hed", s[f"blocks.0.attn.W_{n}"])
               for n in "QKV"},
            "blocks.0.attn.W_O": torch.einsum("hed->dhe", s["blocks.0.attn.W_O"]).reshape(
                d_model, H * d_head),
            "blocks.0.attn.mask": torch.tril(torch.ones(3, 3)),
            "blocks.0.mlp.W_in": s["blocks.0.mlp.W_in"].T.clone(),
            "blocks.0.mlp.b_in": s["blocks.0.mlp.b_in"],
            "blocks.0.mlp.W_out": s["blocks.0.mlp.W_out"].T.clone(),
            "blocks.0.mlp.b_out": s["blocks.0.mlp.b_out"], "unembed.W_U": s["unembed.W_U"]}


def original_logits(s: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
    """The forward pass of Nanda et al.'s grokking code, in its own layout and index names
    (causal scores masked by tril minus 1e10, then softmax of scores / sqrt(d_head))."""
    x = torch.einsum("dbp->bpd", s["embed.W_E"][:, tokens]) + s["pos_embed.W_pos"]
    k, q, v = (torch.einsum("ihd,bpd->biph", s[f"blocks.0.attn.W_{n}"], x) for n in "KQV")
    scores = torch.einsum("biph,biqh->biqp", k, q)
    masked = torch.tril(scores) - 1e10 * (1 - s["blocks.0.attn.mask"])
    z = torch.einsum("biph,biqp->biqh", v, (masked / k.shape[-1] ** 0.5).softmax(-1))
    z_flat = z.permute(0, 2, 1, 3).reshape(z.shape[0], z.shape[2], -1)
    x = x + torch.einsum("df,bqf->bqd", s["blocks.0.attn.W_O"], z_flat)
    hidden = torch.relu(torch.einsum("md,bpd->bpm", s["blocks.0.mlp.W_in"], x) + s["blocks.0.mlp.b_in"])
    x = x + torch.einsum("dm,bpm->bpd", s["blocks.0.mlp.W_out"], hidden) + s["blocks.0.mlp.b_out"]
    return (x @ s["unembed.W_U"])[:, -1]


def test_nanda_et_al_s_own_layout_loads_and_computes_its_forward_pass(tmp_path):
    """ARENA's full_run_data.pth holds runs of Nanda et al.'s own Transformer, whose weights are
    laid out otherwise than TransformerLens's: loaded, the model computes that code's forward."""
    original = original_layout(legacy_state(seed=3))
    config = {"d_model": 16, "num_heads": 2, "d_head": 4, "d_mlp": 32, "d_vocab": P + 1,
              "n_ctx": 3, "act_type": "ReLU", "use_ln": False}
    torch.save({"state_dicts": [original], "config": config}, tmp_path / "full_run_data.pth")
    model = mm.load_tl_checkpoint(tmp_path / "full_run_data.pth")
    assert model.cfg.n_heads == 2 and model.cfg.d_head == 4 and model.cfg.d_vocab_out == P + 1
    with torch.no_grad():
        torch.testing.assert_close(model.last_logits(TOKENS), original_logits(original, TOKENS))
    torch.save({"state_dicts": [original], "config": {**config, "use_ln": True}},
               tmp_path / "ln.pth")
    with pytest.raises(CheckpointError, match="use_ln=True"):
        mm.load_tl_checkpoint(tmp_path / "ln.pth")
