"""Other tools' SAE folders: sparsify and SAELens in, both out, through the real packages."""

from __future__ import annotations

import re

import pytest
import torch
from helpers import run_cli

from sae.errors import UserError
from sae.formats import load_any, load_sparsify
from sae.hooks import layer_from_hook, sublayer_from_hook
from sae.model import SparseAutoencoder
from sae.sae_config import SaeConfig, SaeMetadata


def _sae(d_in=16, d_sae=64, k=4) -> tuple[SparseAutoencoder, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, d_in, generator=g) * 5 + 2
    sae = SparseAutoencoder(SaeConfig(d_in, d_sae, "topk", k), SaeMetadata(backbone="tiny", layer=3))
    sae.initialize(x, generator=g)
    with torch.no_grad():
        sae.b_enc.normal_(generator=g)
    return sae, x


def test_hook_names_map_to_layers():
    assert layer_from_hook("blocks.9.hook_resid_pre") == 9
    assert layer_from_hook("blocks.9.hook_resid_post") == 10
    assert layer_from_hook("layers.9") == 10
    assert layer_from_hook("vision_model.encoder.layers.11") == 12
    assert layer_from_hook("visual.transformer.resblocks.3") == 4
    assert layer_from_hook("blocks.9.attn.hook_z") is None
    assert layer_from_hook("embedding") == -2  # the image embedding (sae.backbone.EMBEDDING)
    assert layer_from_hook("blocks.9.hook_mlp_out") is None
    assert sublayer_from_hook("blocks.9.hook_mlp_out") == (9, "mlp_out")
    assert sublayer_from_hook("blocks.2.hook_attn_out") == (2, "attn_out")
    assert sublayer_from_hook("blocks.2.hook_resid_pre") is None


def test_export_to_sparsify_loads_in_sparsify_with_the_same_activations(tmp_path):
    sparsify = pytest.importorskip("sparsify")
    sae, x = _sae()
    r = run_cli("export", "--sae", _saved(sae, tmp_path), "--to", "sparsify", "-o", tmp_path / "layers.2")
    assert r.returncode == 0, r.stderr
    theirs = sparsify.SparseCoder.load_from_disk(tmp_path / "layers.2")
    with torch.no_grad():
        ours = sae.encode_sparse(x)
        out = theirs.encode(x)
    mine = torch.zeros(100, 64).scatter_(1, ours.indices, ours.values)
    them = torch.zeros(100, 64).scatter_(1, out.top_indices, out.top_acts)
    assert torch.allclose(mine, them, atol=1e-5)
    back = load_sparsify(tmp_path / "layers.2")  # and back, the layer read off the hookpoint
    assert back.metadata.layer == 3
    with torch.no_grad():
        assert torch.allclose(back.encode(x), sae.encode(x), atol=1e-5)


def _saved(sae, tmp_path):
    sae.save(tmp_path / "ours")
    return tmp_path / "ours"


def test_a_sparsify_sae_opens_as_a_project_sae_and_imports_for_saelens(tmp_path):
    sparsify = pytest.importorskip("sparsify")
    sae_lens = pytest.importorskip("sae_lens")
    torch.manual_seed(1)
    coder = sparsify.SparseCoder(16, sparsify.SparseCoderConfig(num_latents=48, k=5))
    with torch.no_grad():
        coder.encoder.bias.normal_()
        coder.b_dec.normal_()
    coder.save_to_disk(tmp_path / "encoder.layers.5")
    x = torch.randn(50, 16)
    with torch.no_grad():
        out = coder.encode(x)
    expected = torch.zeros(50, 48).scatter_(1, out.top_indices, out.top_acts)
    opened = load_any(tmp_path / "encoder.layers.5")  # the loader every command and the editor use reads it too
    assert opened.metadata.layer == 6 and opened.cfg.k == 5
    with torch.no_grad():
        assert torch.allclose(opened.encode(x), expected, atol=1e-5)
    r = run_cli("import", tmp_path / "encoder.layers.5", "-o", tmp_path / "project")
    assert r.returncode == 0, r.stderr
    assert "layer 6" in r.stdout
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "project"))
    with torch.no_grad():
        assert torch.allclose(theirs.encode(x), expected, atol=1e-5)


def test_an_saelens_sae_of_another_tool_gets_its_layer_from_the_hook(tmp_path):
    sae_lens = pytest.importorskip("sae_lens")
    from sae_lens import TopKSAE, TopKSAEConfig

    cfg = TopKSAEConfig(d_in=16, d_sae=40, k=3)
    cfg.metadata.hook_name = "blocks.4.hook_resid_post"
    theirs = TopKSAE(cfg)
    with torch.no_grad():
        for p in theirs.parameters():
            p.normal_()
    theirs.save_model(tmp_path / "prisma")
    ours = SparseAutoencoder.load(tmp_path / "prisma")
    assert ours.metadata.layer == 5
    x = torch.randn(30, 16)
    with torch.no_grad():
        assert torch.allclose(ours.encode(x), theirs.encode(x), atol=1e-4)
    # an SAE on block 4's MLP output keeps that place through a save, and SAELens reads its hook back
    cfg.metadata.hook_name = "blocks.4.hook_mlp_out"
    TopKSAE(cfg).save_model(tmp_path / "mlp")
    mlp = SparseAutoencoder.load(tmp_path / "mlp")
    assert (mlp.metadata.layer, mlp.metadata.site) == (4, "mlp_out")
    mlp.save(tmp_path / "mlp-project")
    assert sae_lens.SAE.load_from_disk(tmp_path / "mlp-project").cfg.metadata.hook_name == "blocks.4.hook_mlp_out"


def test_unmappable_folder_names_and_other_coders_get_one_sentence(tmp_path):
    sparsify = pytest.importorskip("sparsify")
    sparsify.SparseCoder(8, sparsify.SparseCoderConfig(num_latents=16, k=2)).save_to_disk(tmp_path / "my_sae")
    with pytest.raises(UserError, match="Cannot tell which layer"):
        load_sparsify(tmp_path / "my_sae")
    assert load_sparsify(tmp_path / "my_sae", layer=2).metadata.layer == 2
    r = run_cli("import", tmp_path / "my_sae", "-o", tmp_path / "p")
    assert r.returncode == 2 and "Cannot tell which layer" in r.stderr and "Traceback" not in r.stderr
    sparsify.SparseCoder(8, sparsify.SparseCoderConfig(num_latents=16, k=2, transcode=True)).save_to_disk(
        tmp_path / "layers.1"
    )
    with pytest.raises(UserError, match="transcoder"):
        load_sparsify(tmp_path / "layers.1")


def _fake_hub_file(cache, repo, filename):
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("abc123")
    snap = folder / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / filename).write_text("{}")


def test_models_lists_recipes_and_reads_the_hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))  # what HF_HUB_CACHE=... sets at import
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    r = run_cli("models")
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip()}
    assert "ViT-bigG-14:laion2b_s39b_b160k @ 24/48" in rows["kandinsky-2.2"] and " no " in rows["kandinsky-2.2"]
    assert "ViT-H-14:laion2b_s32b_b79k @ 16/32" in rows["sd21-unclip"]
    assert "downloads ~15.5 GB" in r.stdout
    assert "fp32 17.9 GB measured (default); fp16 ~14 GB (--fp16)" in r.stdout
    assert "Measured on a two-core CPU" in r.stdout
    _fake_hub_file(tmp_path / "hub", "kandinsky-community/kandinsky-2-2-decoder", "model_index.json")
    r = run_cli("models")
    rows = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip()}
    assert "decoder only" in rows["kandinsky-2.2"] and "decoder only" not in rows["sd21-unclip"]


@pytest.mark.parametrize("layout", ["ours", "sparsify"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_an_sae_whose_weights_hold_nan_or_inf_is_refused_with_a_sentence(tmp_path, layout, bad):
    from safetensors.torch import load_file, save_file

    sae, _ = _sae()
    folder = _saved(sae, tmp_path)
    if layout == "sparsify":
        run_cli("export", "--sae", folder, "--to", "sparsify", "-o", tmp_path / "layers.3")
        folder = tmp_path / "layers.3"
    assert load_any(folder).d_sae == 64  # sound as saved
    weights = next(p for p in folder.glob("*.safetensors"))
    tensors = load_file(weights)
    tensors["W_dec"][40, 3] = bad  # one value deep inside one latent's row
    save_file(tensors, weights)
    with pytest.raises(UserError, match="W_dec holds NaN or infinite values"):
        load_any(folder)
    from PIL import Image

    Image.new("RGB", (32, 24), "white").save(tmp_path / "a.png")
    r = run_cli("edit", "--sae", folder, "--add", "1=1", "-o", tmp_path / "out", tmp_path / "a.png")
    assert r.returncode == 2 and "NaN or infinite" in r.stderr and "Traceback" not in r.stderr


def test_a_config_that_claims_an_enormous_width_is_refused_before_any_memory_is_taken(tmp_path):
    import json

    folder = _saved(_sae()[0], tmp_path)
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["d_sae"] = 10**12  # 4 PB of weights, were it believed
    (folder / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="do not belong together"):
        load_any(folder)


def test_a_damaged_sparsify_folder_gets_one_sentence(tmp_path):
    """sparsify's cfg.json and weights read as SAELens' are: sizes checked before memory is taken."""
    import json

    from safetensors.torch import load_file, save_file

    sparsify = pytest.importorskip("sparsify")
    folder = tmp_path / "layers.2"
    sparsify.SparseCoder(8, sparsify.SparseCoderConfig(num_latents=16, k=2)).save_to_disk(folder)
    cfg, tensors = json.loads((folder / "cfg.json").read_text()), load_file(folder / "sae.safetensors")
    for cfg_change, tensor_change, sentence in (
        ({"k": "two"}, {}, "gives k as 'two'"),
        ({"k": float("nan")}, {}, "gives k as nan"),
        ({"k": 99}, {}, "k must be between 1 and the width 16"),
        ({"d_in": 9}, {}, "do not match its cfg.json"),
        ({}, {"W_dec": torch.zeros(16, 9)}, "do not match its cfg.json"),
        ({}, {"encoder.weight": torch.zeros(16)}, "'encoder.weight' has shape (16,)"),
        ({}, {"b_dec": None}, "has no 'b_dec'"),
        ({}, {"encoder.bias": torch.zeros(16, dtype=torch.int32)}, "'encoder.bias' holds I32 values, not weights"),
    ):
        (folder / "cfg.json").write_text(json.dumps(cfg | cfg_change))
        changed = {n: t for n, t in (tensors | tensor_change).items() if t is not None}
        save_file(changed, folder / "sae.safetensors")
        with pytest.raises(UserError, match=re.escape(sentence)):
            load_any(folder)
    (folder / "sae.safetensors").write_bytes(b"\x10" * 64)
    with pytest.raises(UserError, match="not a readable safetensors file"):
        load_any(folder)


def test_an_older_saelens_topk_config_is_read_as_saelens_reads_it(tmp_path):
    """SAELens before 6 wrote a TopK SAE as architecture 'standard' with activation_fn_str 'topk'
    and its k in activation_fn_kwargs, and normalisation as a bool; SAELens still loads those."""
    import json
    import shutil

    sae_lens = pytest.importorskip("sae_lens")
    sae, x = _sae(k=4)
    folder = _saved(sae, tmp_path)
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg = {k: v for k, v in cfg.items() if k not in ("architecture", "k")} | {
        "architecture": "standard",
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 5},
    }
    (folder / "cfg.json").write_text(json.dumps(cfg))
    # SAELens' own reading of an older config (its hub loader's), saved in today's format beside it
    from sae_lens.loading.pretrained_sae_loaders import handle_pre_6_0_config

    shutil.copytree(folder, tmp_path / "converted")
    (tmp_path / "converted" / "cfg.json").write_text(json.dumps(handle_pre_6_0_config(dict(cfg))))
    ours, theirs = load_any(folder), sae_lens.SAE.load_from_disk(tmp_path / "converted")
    assert ours.cfg.arch == "topk" and ours.cfg.k == 5
    with torch.no_grad():
        assert torch.allclose(ours.encode(x), theirs.encode(x), atol=1e-4)
    for change, sentence in (
        ({"activation_fn_str": "tanh-relu", "activation_fn_kwargs": {}}, "activation 'tanh-relu'"),
        ({"activation_fn_kwargs": {"k": "eight"}}, "gives k as 'eight'"),
        ({"d_sae": -3}, "gives d_sae as -3"),
        ({"d_sae": float("inf")}, "gives d_sae as inf"),  # JSON's Infinity, which Python's json reads
        ({"metadata": [1]}, None),  # a metadata that is not an object is read as none
        ({"normalize_activations": False}, None),  # the older files' bool for "none"
    ):
        (folder / "cfg.json").write_text(json.dumps(cfg | change))
        if sentence is None:
            assert load_any(folder).cfg.k == 5
        else:
            with pytest.raises(UserError, match=sentence):
                load_any(folder)


def _random_saelens(sae, thresholds: bool = False):
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.normal_(0.0, 1.0 if name != "W_dec" else 0.3)
        if thresholds:
            sae.threshold.uniform_(0.5, 2.0)  # some latents above zero but under their threshold
    return sae


def test_a_saelens_jumprelu_sae_reads_edits_and_saves_as_saelens_reads_it(tiny_clip, tmp_path):
    """SAELens' JumpReLU (also what its BatchTopK saves for use) with per-latent thresholds."""
    sae_lens = pytest.importorskip("sae_lens")
    from PIL import Image
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig

    from sae.backbone import load_backbone
    from sae.session import Session
    from sae.steer import Edit

    cfg = JumpReLUSAEConfig(d_in=32, d_sae=80)
    cfg.metadata.hook_name = "blocks.2.hook_resid_post"
    theirs = _random_saelens(JumpReLUSAE(cfg), thresholds=True)
    theirs.save_model(tmp_path / "theirs")
    ours = load_any(tmp_path / "theirs")
    assert (ours.cfg.arch, ours.metadata.layer) == ("jumprelu", 3)
    x = torch.randn(200, 32) * 2
    with torch.no_grad():
        expected = theirs.encode(x)
        fired = (expected > 0).float().mean()
        relu_fired = (((x - theirs.b_dec) @ theirs.W_enc + theirs.b_enc) > 0).float().mean()
        assert 0 < fired < relu_fired  # the thresholds silence latents a ReLU would keep
        assert torch.allclose(ours.encode(x), expected, atol=1e-4)
        assert torch.allclose(ours.decode(expected), theirs.decode(expected), atol=1e-4)
    ours.save(tmp_path / "ours")  # and back: SAELens reads sae-studio's file as the same SAE
    again = sae_lens.SAE.load_from_disk(tmp_path / "ours")
    with torch.no_grad():
        assert torch.allclose(again.encode(x), expected, atol=1e-4)
    session = Session(load_backbone(str(tiny_clip), layer=3), SparseAutoencoder.load(tmp_path / "ours"))
    session.set_image(Image.new("RGB", (40, 30), (200, 80, 20)))
    plain = session.embedding([])
    assert torch.allclose(plain, session.current.embedding, atol=1e-5)
    assert not torch.allclose(session.embedding([Edit(3, "add", 5.0)]), plain, atol=1e-3)
    r = run_cli("train", "--acts", tmp_path, "--out", tmp_path / "t", "--arch", "jumprelu")
    assert r.returncode == 2 and "use topk or relu" in r.stderr


@pytest.mark.parametrize(
    ("options", "arch"),
    [
        ({"apply_b_dec_to_input": False}, "topk"),
        ({"rescale_acts_by_decoder_norm": True}, "topk"),
        ({"apply_b_dec_to_input": False, "rescale_acts_by_decoder_norm": True}, "topk"),
        ({"apply_b_dec_to_input": False}, "jumprelu"),
        ({"apply_b_dec_to_input": False}, "standard"),
        ({}, "gated"),  # read as the JumpReLU SAE it equals, and saved as one
        ({"apply_b_dec_to_input": False}, "gated"),
    ],
)
def test_saelens_options_that_change_the_map_are_read_as_saelens_reads_them(options, arch, tmp_path):
    """An SAE that does not subtract b_dec, scales its pre-activations by its decoder norms or gates
    them gives SAELens' own activations and reconstructions."""
    sae_lens = pytest.importorskip("sae_lens")
    from sae_lens import (
        GatedSAE,
        GatedSAEConfig,
        JumpReLUSAE,
        JumpReLUSAEConfig,
        StandardSAE,
        StandardSAEConfig,
        TopKSAE,
        TopKSAEConfig,
    )

    kinds = {
        "topk": (TopKSAE, TopKSAEConfig, {"k": 6}),
        "jumprelu": (JumpReLUSAE, JumpReLUSAEConfig, {}),
        "standard": (StandardSAE, StandardSAEConfig, {}),
        "gated": (GatedSAE, GatedSAEConfig, {}),
    }
    model, config, extra = kinds[arch]
    cfg = config(d_in=16, d_sae=48, **extra, **options)
    theirs = _random_saelens(model(cfg), thresholds=arch == "jumprelu")
    theirs.save_model(tmp_path / "theirs")
    assert all(theirs.cfg.to_dict()[k] == v for k, v in options.items())
    ours = load_any(tmp_path / "theirs")
    x = torch.randn(100, 16) * 2
    with torch.no_grad():
        expected = theirs.encode(x)
        fired = (expected > 0).float().mean()
        assert 0 < fired < 0.9
        if arch in ("gated", "jumprelu"):  # the gate or threshold silences latents a ReLU would keep
            assert fired < (ours.pre_activations(x) > 0).float().mean()
        assert torch.allclose(ours.encode(x), expected, atol=1e-4)
        assert torch.allclose(ours(x).reconstruction, theirs.decode(expected), atol=1e-4)
    ours.save(tmp_path / "ours")
    with torch.no_grad():
        assert torch.allclose(sae_lens.SAE.load_from_disk(tmp_path / "ours").encode(x), expected, atol=1e-4)


def test_an_saelens_sae_on_attention_heads_is_refused_with_a_sentence(tmp_path):
    import json

    folder = _saved(_sae()[0], tmp_path)
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps(cfg | {"reshape_activations": "hook_z"}))
    with pytest.raises(UserError, match="reshapes its inputs"):
        load_any(folder)


def test_an_older_saelens_finetuning_scaling_factor_is_folded_into_the_decoder(tmp_path):
    """SAELens before 6 kept a per-latent scaling_factor and decoded (f * scaling_factor) W_dec + b_dec."""
    import json

    from safetensors.torch import load_file, save_file

    sae, x = _sae()
    folder = _saved(sae, tmp_path)
    tensors, cfg = load_file(folder / "sae_weights.safetensors"), json.loads((folder / "cfg.json").read_text())
    scaling = torch.rand(64) + 0.5
    save_file(tensors | {"scaling_factor": scaling}, folder / "sae_weights.safetensors")
    with pytest.raises(UserError, match="sets no finetuning_scaling_factor"):
        load_any(folder)  # as SAELens' loader refuses it
    (folder / "cfg.json").write_text(json.dumps(cfg | {"finetuning_scaling_factor": True}))
    ours = load_any(folder)
    with torch.no_grad():
        f = ours.encode(x)
        assert torch.allclose(f, sae.encode(x), atol=1e-5)  # the codes are the file's own
        older = (f * scaling) @ tensors["W_dec"] + tensors["b_dec"]
        assert torch.allclose(ours.decode(f), older, atol=1e-4)
    save_file(tensors | {"scaling_factor": torch.ones(64)}, folder / "sae_weights.safetensors")
    with torch.no_grad():  # all ones: nothing to fold
        assert torch.allclose(load_any(folder).decode(f), f @ tensors["W_dec"] + tensors["b_dec"], atol=1e-4)
    save_file(tensors | {"scaling_factor": torch.ones(3)}, folder / "sae_weights.safetensors")
    with pytest.raises(UserError, match="scaling_factor is not 64 finite numbers"):
        load_any(folder)


def test_a_folder_of_sae_folders_names_them(tmp_path):
    """A SAELens release or a sparsify run holds one SAE folder per layer; the parent is not an SAE."""
    pytest.importorskip("sparsify")
    sae, _ = _sae()
    for name in ("layers.2", "layers.5"):
        run_cli("export", "--sae", _saved(sae, tmp_path), "--to", "sparsify", "-o", tmp_path / "run" / name)
    for command in (("features", "--sae", tmp_path / "run", "--search", "cat"), ("import", tmp_path / "run")):
        r = run_cli(*command, "-o", tmp_path / "out") if command[0] == "import" else run_cli(*command)
        assert r.returncode == 2 and "holds SAE folders, not one SAE: layers.2, layers.5; pass one" in r.stderr, (
            r.stderr
        )


def test_json_nested_past_the_parsers_recursion_limit_is_one_sentence(tmp_path):
    """Python's json parser recurses into nested arrays: a hostile cfg.json or labels.json raised
    RecursionError, which no reader expected."""
    from sae.labels import read_labels

    folder = _saved(_sae()[0], tmp_path)
    deep = "[" * 100_000 + "]" * 100_000
    (folder / "labels.json").write_text(deep)
    with pytest.raises(UserError, match="labels.json is not valid JSON"):
        read_labels(folder)
    (folder / "cfg.json").write_text(deep)
    r = run_cli("features", "--sae", folder, "--search", "cat")
    assert r.returncode == 2 and "cfg.json is not a valid JSON config" in r.stderr, r.stderr


def test_a_hub_sae_imports_from_the_hugging_face_cache(tmp_path, monkeypatch):
    """hf:OWNER/REPO/FOLDER goes through huggingface_hub's own download, which answers from its cache
    when offline; a release's root names its SAE folders, a repository not at hand is one sentence."""
    from huggingface_hub import constants

    from sae.download import sae_files

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    sae, x = _sae()
    sae.metadata.backbone = ""  # no encoder to check the fit against here
    snapshot = tmp_path / "hub" / "models--lab--vit-saes" / "snapshots" / ("0" * 40)
    for hook in ("blocks.2.hook_resid_post", "blocks.5.hook_resid_post"):
        sae.save(snapshot / hook)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    r = run_cli("import", "hf:lab/vit-saes/blocks.5.hook_resid_post", "-o", tmp_path / "mine")
    assert r.returncode == 0, r.stderr
    with torch.no_grad():
        assert torch.allclose(load_any(tmp_path / "mine").encode(x), sae.encode(x), atol=1e-6)
    for source, says in (
        ("hf:lab/vit-saes", "hf:lab/vit-saes holds SAE folders, not one SAE: blocks.2.hook_resid_post, blocks.5"),
        ("hf:lab/vit-saes/blocks.9", "has no folder 'blocks.9'"),
        ("hf:lab/vit-saes/blocks.2.hook_resid_post/weights.pt", "has no file 'blocks.2.hook_resid_post/weights.pt'"),
        ("hf:lab/elsewhere", "Could not download lab/elsewhere"),
        ("hf:lab", "does not name a hub repository"),
    ):
        r = run_cli("import", source, "-o", tmp_path / "out")
        errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]  # after the download's bar
        assert r.returncode == 2 and len(errors) == 1 and says in errors[0], r.stderr
    # online, a repository's listing decides what is fetched: the folder's own files, never the other layers'
    listing = ["README.md", "a/cfg.json", "a/sae_weights.safetensors", "a/notes.txt", "b/cfg.json", "b/x/cfg.json"]
    assert sae_files(listing, "a") == (["a/cfg.json", "a/sae_weights.safetensors"], [])
    assert sae_files(listing, "") == ([], ["a", "b", "b/x"])
    prisma = ["p/config.json", "p/n_images_100.pt", "p/n_images_200.pt"]  # one pickle of several, and its config
    assert sae_files(prisma, "p", only="n_images_200.pt") == (["p/config.json", "p/n_images_200.pt"], [])


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("layer", "five", "gives layer as 'five', not a layer"),
        ("layer", 2.5, "gives layer as 2.5"),
        ("layer", -7, "gives layer as -7"),
        ("token_set", "bogus", "gives token_set as 'bogus', not all, patches or cls"),
        ("site", 3, "gives site as 3"),
        ("backbone", 7, "gives backbone as 7, not an encoder name"),
        ("metrics", [1], None),  # a record of the wrong kind is left out
        ("input_scale", "big", None),
    ],
)
def test_metadata_that_cannot_place_the_sae_is_one_sentence(field, value, says, tmp_path):
    """sae-studio's own metadata in a hand-edited cfg.json crashed deep inside the edit (a layer
    compared with an int, a token set looked up) when it held the wrong kind of value."""
    import json

    folder = _saved(_sae()[0], tmp_path)
    cfg = json.loads((folder / "cfg.json").read_text())
    cfg["metadata"]["sae_studio"][field] = value
    (folder / "cfg.json").write_text(json.dumps(cfg))
    if says is None:
        meta = load_any(folder).metadata
        assert getattr(meta, field) == getattr(SaeMetadata(), field) and meta.layer == 3
    else:
        with pytest.raises(UserError, match=re.escape(says)):
            load_any(folder)


def test_saelens_weights_of_integers_are_refused_with_a_sentence(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = _saved(_sae()[0], tmp_path)
    tensors = load_file(folder / "sae_weights.safetensors")
    save_file(tensors | {"b_enc": tensors["b_enc"].to(torch.int64)}, folder / "sae_weights.safetensors")
    with pytest.raises(UserError, match="'b_enc' holds I64 values, not weights"):
        load_any(folder)
    save_file(tensors | {"b_enc": tensors["b_enc"].half()}, folder / "sae_weights.safetensors")
    assert load_any(folder).b_enc.dtype == torch.float32  # half precision is weights, read as float32
