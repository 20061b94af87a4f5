# %% [markdown]
# # TransformerLens views of the triple and its grafts
# `handle.transformer_lens()` opens any variant or in-memory graft as a TransformerLens model built
# from the handle's weights (no checkpoint written, no hub): `HookedTransformer` for this Llama
# organism, `TransformerBridge` for Gemma families. Everything TransformerLens offers then works
# on a graft: `run_with_cache`, hooks, activation patching. This notebook caches the short arm
# and the paper's "short + long.mha" graft, compares their heads' attention on a long prompt, and
# redoes `lensft patch`'s layer-by-layer MHA patching with TransformerLens hooks.

# %%
import numpy as np
import torch

from _common import load_organism
from lensft.graft import GraftSpec, graft_model, variant_model
from lensft.probes.patching import build_sequences, patch_across, sequence_scores
from lensft.probes.registry import get_probe
from lensft.prompts.io import make_prompt_set
from lensft.prompts.schema import TextItem

b, triple, sets = load_organism()
short, long = variant_model(triple, "short"), variant_model(triple, "long")
graft = graft_model(triple, GraftSpec.build(mha="long", ffn="short"))  # short + long.mha
views = {"short": short.transformer_lens(), "short+long.mha": graft.transformer_lens()}
for name, v in views.items():
    print(f"{name:15s} {type(v).__name__}  provenance: {v.lensft_provenance.label}  graft: {v.lensft_provenance.graft}")

# %% [markdown]
# `run_with_cache` on the longest needle prompt: every head's attention pattern, then its entropy
# (nats, mean over queries) per layer and head, and the graft minus the short arm.

# %%
item = max(sets["needle"].items, key=lambda it: len(it.prompt))
ids = views["short"].to_tokens(item.prompt)  # the checkpoint tokenizer's ids, as lensft's probes use
print("prompt tokens:", ids.shape[1])


def head_entropy(view, ids: torch.Tensor) -> np.ndarray:
    """[layer, head] mean over queries of -sum_k p log p of the cached attention patterns (nats)."""
    _, cache = view.run_with_cache(ids, names_filter=lambda n: n.endswith("attn.hook_pattern"))
    pats = [cache[f"blocks.{i}.attn.hook_pattern"][0].double() for i in range(view.cfg.n_layers)]
    return torch.stack([torch.special.entr(p).sum(-1).mean(-1) for p in pats]).numpy()


with torch.no_grad():
    ent = {name: head_entropy(v, ids) for name, v in views.items()}
diff = ent["short+long.mha"] - ent["short"]
print("entropy, short+long.mha - short, per layer x head (nats):\n", np.round(diff, 4))
top = np.dstack(np.unravel_index(np.argsort(-np.abs(diff), axis=None)[:5], diff.shape))[0]
print("largest changes (layer, head, nats):", [(int(i), int(j), round(float(diff[i, j]), 4)) for i, j in top])

# %% [markdown]
# The same numbers from lensft's streamed statistics (the `attention_spread` probe, which never
# builds the n x n pattern): equal to TransformerLens's within 1e-5 nats.

# %%
spread = get_probe("attention_spread")
as_text = make_prompt_set("longest-needle", "1", "text", [TextItem(id=item.id, text=item.prompt)])
for name, h in {"short": short, "short+long.mha": graft}.items():
    probe_ent = spread.run(h, as_text, spread.Settings()).array("entropy_per_prompt")[0, 0]  # phase "all"
    gap = float(np.abs(probe_ent - ent[name]).max())
    print(f"{name:15s} max |probe - TransformerLens| = {gap:.1e} nats")
    assert gap < 1e-5

# %% [markdown]
# Activation patching: write the long arm's attention-block output (`hook_attn_out`, before the
# residual add) into the short arm one layer at a time, and measure the change of the
# knowledge-conflict margin log p(context answer) - log p(memory answer) (nats). `lensft patch`
# does this with nnsight on the HF models; here it is done with TransformerLens hooks, on the same
# token sequences and with lensft's scorer, and the two results must agree.

# %%
conflict = sets["conflict"]
lensft_delta = patch_across(short, long, conflict, "mha", metric="margin", mode="each").array("delta")[0]

tl_short, tl_long = views["short"], long.transformer_lens()
n_layers = tl_short.cfg.n_layers
tl_delta = np.zeros((len(conflict.items), n_layers))
with torch.no_grad():
    for s in build_sequences(short, conflict, "margin", conflict.header.chat):
        x = torch.tensor([s.ids])
        _, donor = tl_long.run_with_cache(x, names_filter=lambda n: n.endswith("hook_attn_out"))
        clean = float(sequence_scores(tl_short(x), x, [s])[0])
        for layer in range(n_layers):
            name = f"blocks.{layer}.hook_attn_out"
            patched = tl_short.run_with_hooks(x, fwd_hooks=[(name, lambda act, hook: donor[hook.name])])
            tl_delta[s.item, layer] += float(sequence_scores(patched, x, [s])[0]) - clean
tl_delta = tl_delta.mean(0)
print("MHA patch, margin change per layer (nats)")
print("  lensft patch (nnsight):  ", np.round(lensft_delta, 4).tolist())
print("  TransformerLens hooks:   ", np.round(tl_delta, 4).tolist())
print("  max difference:", f"{np.abs(tl_delta - lensft_delta).max():.1e}")
assert np.allclose(tl_delta, lensft_delta, atol=1e-4, rtol=0)
