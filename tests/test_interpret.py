"""Tests for `mie_lm.interpret`: the activation cache against Hugging Face, logit lens, attribution, ablation, patching, induction."""
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pytest
import torch

from mie_lm.interpret import (CACHE_NAMES, ActivationCache, ablate, activation_means, head_ablation_effects, head_explorer,
                              head_outputs, head_table, hooked, induction_scores, lens_labels, logit_attribution, logit_diff,
                              logit_lens, next_token_ranks, patch, patched, plot_grid, plot_heads, plot_logit_lens,
                              previous_token_scores, repeated_sequence_loss, repeated_tokens, residual_components,
                              run_with_cache, token_losses)
from mie_lm.model import GPT, GPTConfig

torch.set_num_threads(1)  # small models: extra threads only add contention on shared CI machines


def _random_model(bias=True, seed=0, **kw):
    "A small GPT with large random weights (biases and LayerNorms too), so that no term of a sum is negligible."
    torch.manual_seed(seed)
    m = GPT(GPTConfig(**{**dict(n_layer=3, n_head=4, n_embd=32, block_size=16, vocab_size=50, bias=bias), **kw}))
    with torch.no_grad():
        for p in m.parameters(): p.normal_(0.0, 0.3)
    return m.eval()


@pytest.fixture(scope="module")
def model(): return _random_model()


@pytest.fixture(scope="module")
def ids(): return torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(1))


def _n_hooks(m): return sum(len(x._forward_hooks) + len(x._forward_pre_hooks) for x in m.modules())


# ---- run_with_cache
def test_cache_matches_hugging_face(model, ids):
    transformers = pytest.importorskip("transformers")
    transformers.logging.set_verbosity_error()
    logits, cache = run_with_cache(model, ids)
    hf = model.to_hf_gpt2().eval()
    hf.set_attn_implementation("eager")
    out = hf(ids, output_hidden_states=True, output_attentions=True)
    torch.testing.assert_close(logits, out.logits, atol=1e-5, rtol=0)
    assert len(cache.hidden_states) == len(out.hidden_states) == model.config.n_layer + 1
    for ours, theirs in zip(cache.hidden_states, out.hidden_states): torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)
    for ours, theirs in zip(cache.attentions, out.attentions, strict=True): torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_cache_pieces_add_up(model, ids):
    logits, c = run_with_cache(model, ids)
    assert set(c) == set(CACHE_NAMES)
    B, T, C, H = *ids.shape, model.config.n_embd, model.config.n_head
    for l, block in enumerate(model.transformer.h):
        assert c["head_out"][l].shape == (B, T, H, C) and c["pattern"][l].shape == (B, H, T, T)
        torch.testing.assert_close(c["head_out"][l].sum(2) + block.attn.c_proj.bias, c["attn_out"][l], atol=1e-5, rtol=0)
        torch.testing.assert_close(c["resid_pre"][l] + c["attn_out"][l], c["resid_mid"][l])
        torch.testing.assert_close(c["resid_mid"][l] + c["mlp_out"][l], c["resid_post"][l])
        torch.testing.assert_close(head_outputs(c["z"][l], block.attn.c_proj.weight), c["head_out"][l])
    torch.testing.assert_close(c["embed"] + c["pos_embed"], c["resid_pre"][0])
    torch.testing.assert_close(model.transformer.ln_f(c["resid_post"][-1]), c["ln_final"])
    torch.testing.assert_close(model(ids), logits)


def test_cache_with_padding_matches_model(model, ids):
    mask = torch.ones_like(ids); mask[0, :5] = 0  # left padding in row 0
    logits, c = run_with_cache(model, ids, attention_mask=mask)
    ref_logits, ref_att = model(ids, attention_mask=mask, output_attentions=True)
    torch.testing.assert_close(logits, ref_logits)
    for ours, theirs in zip(c["pattern"], ref_att, strict=True): torch.testing.assert_close(ours, theirs)
    assert c["pattern"][0][0, :, 6, :5].abs().max() == 0  # padded keys get no attention


def test_cache_keeps_only_what_is_asked(model, ids):
    _, c = run_with_cache(model, ids, names=("resid_pre",))
    assert list(c) == ["resid_pre"] and isinstance(c, ActivationCache)
    _, c = run_with_cache(model, ids, names="pattern")
    assert list(c) == ["pattern"]
    with pytest.raises(KeyError, match="has no 'z'"): c["z"]
    with pytest.raises(ValueError, match="'resid'"): run_with_cache(model, ids, names=("resid",))


def test_hooks_removed_and_mode_restored_even_on_error(model):
    model.train()
    try:
        with pytest.raises(ValueError, match="token id"): run_with_cache(model, torch.tensor([[0, 99]]))
        assert _n_hooks(model) == 0 and model.training
    finally: model.eval()
    with pytest.raises(RuntimeError, match="boom"):
        with hooked([(model.transformer.ln_f, lambda m, a, o: None, False)]): raise RuntimeError("boom")
    assert _n_hooks(model) == 0


def test_no_bias_model(ids):
    m = _random_model(bias=False)
    _, c = run_with_cache(m, ids)
    for l in range(m.config.n_layer): torch.testing.assert_close(c["head_out"][l].sum(2), c["attn_out"][l], atol=1e-5, rtol=0)


# ---- logit lens
def test_logit_lens_last_layer_is_the_output(model, ids):
    logits, c = run_with_cache(model, ids)
    lens = logit_lens(model, c)
    assert lens.shape == (model.config.n_layer + 1, *ids.shape, model.config.vocab_size)
    torch.testing.assert_close(lens[-1], logits, atol=1e-5, rtol=0)
    ranks, probs = next_token_ranks(lens, ids)
    assert ranks.shape == probs.shape == (model.config.n_layer + 1, 2, 11)
    # the rank agrees with a sort, and the probability with a softmax
    order = logits[0, 3].argsort(descending=True)
    assert order[ranks[-1, 0, 3]].item() == ids[0, 4].item()
    torch.testing.assert_close(probs[-1, 0, 3], logits[0, 3].softmax(-1)[ids[0, 4]])
    ax = plot_logit_lens(lens, ids)
    assert [t.get_text() for t in ax.get_yticklabels()] == lens_labels(model.config.n_layer); plt.close("all")
    assert lens_labels(2) == ["embeddings", "after block 0", "after block 1"]
    with pytest.raises(KeyError, match="resid_pre"): logit_lens(model, run_with_cache(model, ids, names=("z",))[1])


# ---- logit attribution
@pytest.mark.parametrize("row,pos,a,b", [(0, -1, 3, 7), (1, 5, 10, 2)])
def test_attribution_sums_to_logit_difference(model, ids, row, pos, a, b):
    logits, c = run_with_cache(model, ids)
    s = logit_attribution(model, c, a, b, row=row, pos=pos)
    assert abs(s.sum() - (logits[row, pos, a] - logits[row, pos, b]).item()) < 1e-4
    assert {"embed", "pos_embed", "L0H0", "L2H3", "L1 MLP", "L0 attn bias", "ln_f bias"} <= set(s.index)
    parts = residual_components(model, c, row, pos)
    torch.testing.assert_close(sum(parts.values()), c["resid_post"][-1][row, pos], atol=1e-4, rtol=0)


def test_attribution_with_rmsnorm_and_no_bias(ids):
    m = _random_model(bias=False)
    m.transformer.ln_f = torch.nn.RMSNorm(m.config.n_embd, eps=1e-5)
    with torch.no_grad(): m.transformer.ln_f.weight.normal_(1.0, 0.3)
    logits, c = run_with_cache(m, ids)
    s = logit_attribution(m, c, 4, 9)
    assert abs(s.sum() - (logits[0, -1, 4] - logits[0, -1, 9]).item()) < 1e-4
    assert "ln_f bias" not in s.index and "L0 attn bias" not in s.index


def test_attribution_bad_tokens(model, ids):
    _, c = run_with_cache(model, ids)
    with pytest.raises(ValueError, match="token_a=50"): logit_attribution(model, c, 50, 1)
    with pytest.raises(ValueError, match="token_b=-1"): logit_attribution(model, c, 1, -1)


# ---- ablation
def test_ablate_zero_and_mean(model, ids):
    base = model(ids)
    with ablate(model, heads=[(1, 2)], mlps=[0]):
        _, c = run_with_cache(model, ids, names=("z", "mlp_out"))
        assert c["z"][1][:, :, 2].abs().max() == 0 and c["mlp_out"][0].abs().max() == 0
        assert c["z"][1][:, :, 1].abs().max() > 0  # other heads untouched
    torch.testing.assert_close(model(ids), base)
    assert _n_hooks(model) == 0
    means = activation_means(model, ids)
    assert [z.shape for z in means["z"]] == [(4, 8)] * 3 and [o.shape for o in means["mlp_out"]] == [(32,)] * 3
    with ablate(model, heads=[(0, 0)], how="mean", ref=means):
        _, c = run_with_cache(model, ids, names=("z",))
    torch.testing.assert_close(c["z"][0][:, :, 0], means["z"][0][0].expand(2, 12, -1))


def test_ablate_all_heads_and_mlps_leaves_only_biases(model, ids):
    "With every head and MLP zeroed, the final stream is the embeddings plus the attention biases."
    every = [(l, h) for l in range(3) for h in range(4)]
    with ablate(model, heads=every, mlps=range(3)):
        _, c = run_with_cache(model, ids, names=("embed", "pos_embed", "resid_post"))
    bias = sum(b.attn.c_proj.bias for b in model.transformer.h)
    torch.testing.assert_close(c["resid_post"][-1], c["embed"] + c["pos_embed"] + bias, atol=1e-5, rtol=0)


def test_ablate_bad_input(model):
    for kw, msg in [(dict(heads=[(3, 0)]), "layer=3"), (dict(heads=[(0, 4)]), "head=4"), (dict(mlps=[5]), "mlp layer=5"),
                    (dict(how="half"), "how='half'"), (dict(heads=[(0, 0)], how="mean"), "needs ref=")]:
        with pytest.raises(ValueError, match=msg):
            with ablate(model, **kw): pass
    assert _n_hooks(model) == 0


def test_head_ablation_effects(model, ids):
    eff = head_ablation_effects(model, ids)
    assert eff.shape == (3, 4) and eff.abs().sum() > 0
    base = token_losses(model, ids).mean()
    with ablate(model, heads=[(2, 1)]): direct = token_losses(model, ids).mean() - base
    assert abs(eff[2, 1].item() - direct.item()) < 1e-5
    assert head_ablation_effects(model, ids, how="mean").shape == (3, 4)
    df = head_table(eff)
    assert df.shape == (3, 4) and df.index.name == "layer" and df.columns.name == "head"
    plot_heads(eff, "x", center=0.0); plot_grid(torch.rand(3, 12), "position", xticks=list("abcdefghijkl")); plt.close("all")


# ---- patching
def test_patched_extremes(model, ids):
    corrupt = ids.clone(); corrupt[:, 3] = (ids[:, 3] + 1) % 50
    clean_logits, cache = run_with_cache(model, ids)
    corrupt_logits = model(corrupt)
    with patched(model, cache, model.config.n_layer): torch.testing.assert_close(model(corrupt), clean_logits, atol=1e-5, rtol=0)
    with patched(model, cache, 0): torch.testing.assert_close(model(corrupt), clean_logits, atol=1e-5, rtol=0)
    for layer in range(model.config.n_layer + 1):
        with patched(model, cache, layer, pos=[]): torch.testing.assert_close(model(corrupt), corrupt_logits)
    with patched(model, cache, 1, head=2, pos=[]): torch.testing.assert_close(model(corrupt), corrupt_logits)
    assert _n_hooks(model) == 0
    # positions before the corrupted one are the same in both runs: patching them changes nothing
    with patched(model, cache, 1, pos=[0, 1, 2]): torch.testing.assert_close(model(corrupt), corrupt_logits, atol=1e-5, rtol=0)


def test_patch_grid(model, ids):
    corrupt = ids.clone(); corrupt[:, 3] = (ids[:, 3] + 1) % 50
    metric = logit_diff(ids[:, -1], corrupt[:, -1] * 0 + 7)
    resid = patch(model, ids, corrupt, "resid", metric=metric)
    assert resid.shape == (model.config.n_layer + 1, 12)
    torch.testing.assert_close(resid[0, 3], torch.tensor(1.0), atol=1e-4, rtol=0)  # the embedding of the changed token
    torch.testing.assert_close(resid[-1, -1], torch.tensor(1.0), atol=1e-4, rtol=0)  # the last stream, last position
    assert resid[:, :3].abs().max() < 1e-4  # earlier positions carry no difference
    raw = patch(model, ids, corrupt, "head", metric=metric, normalize=False)
    assert raw.shape == (3, 4)
    m_corrupt = metric(model(corrupt)).item()
    with patched(model, run_with_cache(model, ids, names="z")[1], 2, head=1):
        assert abs(metric(model(corrupt)).item() - raw[2, 1].item()) < 1e-5
    assert m_corrupt != raw[2, 1].item()


def test_patch_bad_input(model, ids):
    metric = logit_diff(1, 2)
    with pytest.raises(ValueError, match=r"\(2, 12\) and corrupt_ids \(2, 11\)"): patch(model, ids, ids[:, :11], metric=metric)
    with pytest.raises(ValueError, match=r"shape \(2,\)"): patch(model, ids, ids, metric=lambda lg: lg[:, -1, 0])
    with pytest.raises(ValueError, match="what='mlp'"): patch(model, ids, ids, "mlp", metric=metric)
    with pytest.raises(ValueError, match="metric=None"): patch(model, ids, ids)
    with pytest.raises(ValueError, match="nothing to recover"): patch(model, ids, ids, metric=metric)
    _, cache = run_with_cache(model, ids)
    with pytest.raises(ValueError, match="layer=4"):
        with patched(model, cache, 4): pass
    with pytest.raises(ValueError, match="head=9"):
        with patched(model, cache, 0, head=9): pass
    with pytest.raises(ValueError, match="pos=12 is out of range"):
        with patched(model, cache, 1, pos=[3, 12]): pass


# ---- induction
def test_repeated_tokens_and_losses(model):
    x = repeated_tokens(50, 6, batch_size=3, seed=2)
    assert x.shape == (3, 12) and torch.equal(x[:, :6], x[:, 6:])
    assert torch.equal(x, repeated_tokens(50, 6, batch_size=3, seed=2))
    loss = repeated_sequence_loss(model, 6, batch_size=3, seed=2)
    torch.testing.assert_close(loss, token_losses(model, x))
    assert loss.shape == (11,)
    with pytest.raises(ValueError, match="n=9"): repeated_sequence_loss(model, 9)


def test_scores_on_hand_made_patterns(monkeypatch):
    "The scores read the right diagonals: feed known patterns through `run_with_cache`'s result."
    m = _random_model(n_layer=2, n_head=2, n_embd=16, block_size=12)
    n, T = 6, 12
    prev = torch.zeros(T, T); prev[torch.arange(1, T), torch.arange(T - 1)] = 1; prev[0, 0] = 1
    ind = torch.eye(T); ind[n:] = 0; ind[torch.arange(n, T), torch.arange(1, n + 1)] = 1
    pats = [torch.stack([prev, torch.eye(T)])[None].expand(8, -1, -1, -1), torch.stack([torch.eye(T), ind])[None].expand(8, -1, -1, -1)]
    import mie_lm.interpret as I
    monkeypatch.setattr(I, "_repeated_patterns", lambda model, n, batch_size, seed: pats)
    torch.testing.assert_close(I.induction_scores(m, n), torch.tensor([[0.0, 0.0], [0.0, 1.0]]))
    torch.testing.assert_close(I.previous_token_scores(m, n), torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


def test_scores_shapes_and_range(model):
    for f in (induction_scores, previous_token_scores):
        s = f(model, 6)
        assert s.shape == (3, 4) and s.min() >= 0 and s.max() <= 1
    with pytest.raises(ValueError, match="n=1"): induction_scores(model, 1)


# ---- explorer
def test_head_explorer(model, ids):
    w = head_explorer(model, ids)
    sliders, outer = w.children
    assert len(outer.children) == 3 and all(len(s.children) == 4 for s in outer.children)
    assert outer.children[0].children[0].value.startswith("<img")
    sliders.children[0].value, sliders.children[1].value = 2, 3
    assert outer.selected_index == 2 and outer.children[2].selected_index == 3
    assert _n_hooks(model) == 0


# ---- the modern block options (RMSNorm, rotary embeddings, SwiGLU, no biases), where the model has them
@pytest.mark.parametrize("opts", [dict(norm="rmsnorm"), dict(pos_emb="rope"), dict(mlp="swiglu"),
                                  dict(norm="rmsnorm", pos_emb="rope", mlp="swiglu", bias=False)], ids=lambda d: "+".join(map(str, d.values())))
def test_modern_block_options(opts, ids):
    try: m = _random_model(**opts)
    except TypeError: pytest.skip(f"GPTConfig has no {sorted(opts)} options")
    logits, c = run_with_cache(m, ids)
    ref_logits, ref_att = m(ids, output_attentions=True)
    torch.testing.assert_close(logits, ref_logits)
    for ours, theirs in zip(c["pattern"], ref_att, strict=True): torch.testing.assert_close(ours, theirs)
    for l, block in enumerate(m.transformer.h):
        bias = block.attn.c_proj.bias if block.attn.c_proj.bias is not None else 0.0
        torch.testing.assert_close(c["head_out"][l].sum(2) + bias, c["attn_out"][l], atol=1e-5, rtol=0)
    assert ("pos_embed" in c) == (opts.get("pos_emb", "learned") == "learned")
    torch.testing.assert_close(logit_lens(m, c)[-1], logits, atol=1e-5, rtol=0)
    s = logit_attribution(m, c, 3, 8, row=1, pos=6)
    assert abs(s.sum() - (logits[1, 6, 3] - logits[1, 6, 8]).item()) < 1e-4
    corrupt = ids.clone(); corrupt[:, 2] = (ids[:, 2] + 1) % 50
    with patched(m, c, m.config.n_layer): torch.testing.assert_close(m(corrupt), logits, atol=1e-5, rtol=0)
    with ablate(m, heads=[(0, 1)], mlps=[2]):
        _, inside = run_with_cache(m, ids, names=("z", "mlp_out"))
    assert inside["z"][0][:, :, 1].abs().max() == 0 and inside["mlp_out"][2].abs().max() == 0


def test_head_pruned_model(ids):
    "A model that keeps fewer heads in some layers (`mie_lm.compression`): per-head grids get NaN for the missing heads."
    compression = pytest.importorskip("mie_lm.compression")
    if not hasattr(compression, "CompressedGPT"): pytest.skip("no CompressedGPT")
    torch.manual_seed(0)
    m = compression.CompressedGPT(GPTConfig(n_layer=3, n_head=4, n_embd=32, block_size=16, vocab_size=50), n_heads=[4, 2, 3]).eval()
    logits, c = run_with_cache(m, ids)
    assert [z.shape[2] for z in c["z"]] == [4, 2, 3] and c["pattern"][1].shape[1] == 2
    for l, block in enumerate(m.transformer.h):
        torch.testing.assert_close(c["head_out"][l].sum(2) + block.attn.c_proj.bias, c["attn_out"][l], atol=1e-5, rtol=0)
    s = logit_attribution(m, c, 1, 2)
    assert abs(s.sum() - (logits[0, -1, 1] - logits[0, -1, 2]).item()) < 1e-4 and "L1H2" not in s.index
    eff = head_ablation_effects(m, ids)
    assert eff.shape == (3, 4) and eff[1, 2:].isnan().all() and not eff[0].isnan().any()
    assert induction_scores(m, 6)[2, 3].isnan() and previous_token_scores(m, 6)[0].isfinite().all()
    with pytest.raises(ValueError, match="head=2 is out of range: layer 1 has heads 0..1"):
        with ablate(m, heads=[(1, 2)]): pass
    corrupt = ids.clone(); corrupt[:, 3] = (ids[:, 3] + 1) % 50
    grid = patch(m, ids, corrupt, "head", metric=logit_diff(1, 2))
    assert grid[1, 2:].isnan().all() and grid[0].isfinite().all()
    w = head_explorer(m, ids)
    assert len(w.children[1].children[1].children) == 4


def _wired_induction(V=32, T=24, sharp=3.0):
    "The notebook's hand-wired circuit: L0H0 writes each token's predecessor into its own subspace, L1H0 is an induction head."
    C = 3 * V
    m = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=C, block_size=T, vocab_size=V))
    tok, pos, prev = (slice(k * V, (k + 1) * V) for k in range(3))
    eye = torch.eye(V)
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.fill_(1.0) if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")) else p.zero_()
        m.transformer.wte.weight[:, tok] = eye
        m.transformer.wpe.weight[:, pos] = eye[:T]
        (q0, k0, v0), (q1, k1, v1) = (b.attn.c_attn.weight.split(C) for b in m.transformer.h)
        q0[:V, pos], k0[:V, pos], v0[:V, tok] = sharp * eye, sharp * eye.roll(1, 0), eye
        m.transformer.h[0].attn.c_proj.weight[prev, :V] = eye / 7
        q1[:V, tok], k1[:V, prev], v1[:V, tok] = sharp * eye, sharp * eye, eye
        m.transformer.h[1].attn.c_proj.weight[tok, :V] = eye
    return m.eval()


def test_tools_find_a_hand_wired_circuit():
    m = _wired_induction()
    ind, prev = induction_scores(m, 8), previous_token_scores(m, 8)
    assert divmod(int(ind.argmax()), 2) == (1, 0) and ind[1, 0] > 0.7
    assert divmod(int(prev.argmax()), 2) == (0, 0) and prev[0, 0] > 0.9
    probe = repeated_tokens(32, 8, batch_size=16, seed=1)
    eff = head_ablation_effects(m, probe)
    assert eff[:, 0].min() > 1.0 and eff[:, 1].abs().max() < 1e-4  # only the two wired heads matter
    clean = probe[:, :12]; corrupt = clean.clone(); corrupt[:, 4] = (clean[:, 4] + 1) % 32
    heads = patch(m, clean, corrupt, "head", metric=logit_diff(clean[:, 4], corrupt[:, 4]))
    assert divmod(int(heads.argmax()), 2) == (1, 0)  # the induction head carries the copied token
