"""Published SAE pickles: the Kandinsky 2.2 embedding SAE's layout imports with the same
activations as its own formula and edits an image; hostile or damaged pickles are refused in one
sentence and nothing in them runs."""

from __future__ import annotations

import fractions
import json
import os
import zipfile
from pathlib import Path

import pytest
import torch
from helpers import run_cli, write_images
from PIL import Image

from sae.errors import UserError
from sae.model import SparseAutoencoder
from sae.published import read_tensors

D, F = 24, 96  # the tiny CLIP's embedding width; 4x latents (the published one: 1280 and 163,840)


def _daujotas(folder: Path, seed: int = 0) -> tuple[Path, dict[str, torch.Tensor]]:
    """A state dict in the layout of gytdau/clip-sae-128's sparse_autoencoder_128.pth (fp16), saved
    as torch.save writes it, beside a model.py that must never run."""
    g = torch.Generator().manual_seed(seed)
    t = {
        "encoder.weight": torch.randn(F, D, generator=g) / D**0.5,
        "enc_bias": torch.randn(F, generator=g) * 0.1,
        "decoder.weight": torch.randn(D, F, generator=g) / F**0.5,
        "dec_bias": torch.randn(D, generator=g),
    }
    t = {k: v.half() for k, v in t.items()}
    folder.mkdir(parents=True)
    torch.save(t, folder / "sparse_autoencoder_128.pth")
    (folder / "model.py").write_text(f"open({str(folder / 'ran')!r}, 'w').write('model.py ran')\n")
    return folder, t


def test_the_kandinsky_embedding_sae_imports_with_its_own_activations_and_edits(tiny_clip, tmp_path):
    src, t = _daujotas(tmp_path / "clip-sae-128")
    r = run_cli("import", src, "--model", tiny_clip, "-o", tmp_path / "project")
    assert r.returncode == 0, r.stderr
    assert "Kandinsky 2.2 embedding SAE" in r.stdout and "layer -2" in r.stdout
    assert not (src / "ran").exists()
    sae = SparseAutoencoder.load(tmp_path / "project")
    assert sae.cfg.arch == "relu" and (sae.d_in, sae.d_sae) == (D, F)
    # the layout's own formula: relu(encoder(x) + enc_bias), decoder(f) + dec_bias, no b_dec subtracted
    enc, b_enc, dec, b_dec = (t[k].float() for k in ("encoder.weight", "enc_bias", "decoder.weight", "dec_bias"))
    x = torch.randn(64, D)
    theirs = torch.relu(x @ enc.T + b_enc)
    with torch.no_grad():
        ours = sae.encode(x)
        assert torch.allclose(ours, theirs, atol=1e-4) and (theirs > 0).any()
        assert torch.allclose(sae.decode(ours), theirs @ dec.T + b_dec, atol=1e-4)
    _edits_an_image(tiny_clip, tmp_path / "project")


def _top_k(pre: torch.Tensor, k: int, relu: bool = True) -> torch.Tensor:
    """The k largest pre-activations per row (through a ReLU unless ``relu`` is False), the rest zero."""
    top = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter_(-1, top.indices, top.values.relu() if relu else top.values)


def _same_map_and_edits(tiny_clip: Path, folder: Path, x, theirs, recon) -> None:
    """The imported SAE at ``folder`` encodes ``x`` to ``theirs`` and decodes that to ``recon``, the
    original project's formula, and edits a picture."""
    sae = SparseAutoencoder.load(folder)
    with torch.no_grad():
        assert torch.allclose(sae.encode(x), theirs, atol=1e-4) and (theirs > 0).any()
        assert torch.allclose(sae.decode(theirs), recon, atol=1e-4)
    _edits_an_image(tiny_clip, folder)


def _edits_an_image(tiny_clip: Path, folder: Path) -> None:
    """The imported SAE edits a picture through its encoder: nothing changes at zero, a latent moves it."""
    from sae.backbone import load_backbone
    from sae.session import Session
    from sae.steer import Edit

    sae = SparseAutoencoder.load(folder)
    session = Session(load_backbone(str(tiny_clip), layer=sae.metadata.layer), sae)
    session.set_image(Image.new("RGB", (40, 30), (200, 80, 20)))
    plain = session.embedding([])
    assert torch.allclose(plain, session.current.embedding, atol=1e-5)
    assert not torch.allclose(session.embedding([Edit(3, "add", 5.0)]), plain, atol=1e-3)


def test_a_published_sae_names_its_real_encoder_and_is_checked_when_that_is_at_hand(tmp_path, monkeypatch):
    """Without --model the 1280-d layout names ViT-bigG-14; not downloaded, its fit waits for first use."""
    monkeypatch.setattr("sae.recipes.encoder_cached", lambda spec: False)
    g = torch.Generator().manual_seed(1)
    big = {"encoder.weight": torch.randn(8, 1280, generator=g), "enc_bias": torch.zeros(8),
           "decoder.weight": torch.randn(1280, 8, generator=g), "dec_bias": torch.zeros(1280)}  # fmt: skip
    torch.save(big, tmp_path / "sae.pth")
    r = run_cli("import", tmp_path / "sae.pth", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "encoder ViT-bigG-14:laion2b_s39b_b160k" in r.stdout and "checked when it is first used" in r.stdout
    assert SparseAutoencoder.load(tmp_path / "out").metadata.backbone == "ViT-bigG-14:laion2b_s39b_b160k"


class _RunsACommand:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _hostile(tmp_path: Path) -> dict[str, Path]:
    files = {}
    marker = tmp_path / "it-ran"
    files["code"] = tmp_path / "code.pth"
    torch.save({"encoder.weight": torch.zeros(2, 2), "payload": _RunsACommand(marker)}, files["code"])
    files["globals"] = tmp_path / "globals.pth"
    torch.save({"encoder.weight": torch.zeros(2, 2), "ratio": fractions.Fraction(1, 3)}, files["globals"])
    files["storage"] = tmp_path / "storage.pth"  # a tensor whose storage says more bytes than the file holds
    torch.save({"encoder.weight": torch.zeros(64, 64)}, tmp_path / "valid.pth")
    with zipfile.ZipFile(tmp_path / "valid.pth") as z, zipfile.ZipFile(files["storage"], "w") as out:
        for item in z.infolist():
            data = z.read(item)
            out.writestr(item, data[:16] if item.filename.endswith("/data/0") else data)
    files["truncated"] = tmp_path / "truncated.pth"
    files["truncated"].write_bytes((tmp_path / "valid.pth").read_bytes()[:300])
    files["not a dict"] = tmp_path / "list.pth"
    torch.save([torch.zeros(3)], files["not a dict"])
    return files


@pytest.mark.parametrize("kind", ["code", "globals", "storage", "truncated", "not a dict"])
def test_hostile_or_damaged_pickles_are_one_sentence_and_nothing_runs(kind, tmp_path):
    path = _hostile(tmp_path)[kind]
    with pytest.raises(UserError) as e:
        read_tensors(path)
    assert len(str(e.value).splitlines()) == 1 and str(path.name) in str(e.value)
    assert "weights_only" not in str(e.value)  # torch's reason, not its advice to load the file unsafely
    r = run_cli("import", path, "-o", tmp_path / "out")
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr
    assert not (tmp_path / "it-ran").exists() and not (tmp_path / "out").exists()


def test_pickles_are_refused_on_a_torch_without_the_loader_fixes(tmp_path, monkeypatch):
    _daujotas(tmp_path / "sae")
    monkeypatch.setattr(torch, "__version__", "2.9.1+cpu")
    with pytest.raises(UserError, match=r"needs torch 2\.10 or newer .*CVE-2025-32434"):
        read_tensors(tmp_path / "sae" / "sparse_autoencoder_128.pth")


def test_a_pickle_folder_opened_directly_points_to_import(tmp_path):
    src, _ = _daujotas(tmp_path / "clip-sae-128")
    with pytest.raises(UserError, match="sae-studio import"):
        SparseAutoencoder.load(src)


def _prisma(folder: Path, d_in: int, d_sae: int, **config) -> tuple[Path, dict[str, torch.Tensor]]:
    """A Prisma vision SAE as their save writes it: config.json (typed values included) and a
    pickled state dict in weights.pt."""
    g = torch.Generator().manual_seed(2)
    t = {
        "W_enc": torch.randn(d_in, d_sae, generator=g) / d_in**0.5,
        "b_enc": torch.randn(d_sae, generator=g) * 0.1,
        "W_dec": torch.randn(d_sae, d_in, generator=g) / d_sae**0.5,
        "b_dec": torch.randn(d_in, generator=g),
    }
    cfg = {
        "model_class_name": "HookedViT",
        "model_name": "open-clip:laion/CLIP-ViT-B-32-DataComp.XL-s13B-b90K",
        "hook_point_layer": 5,
        "layer_subtype": "hook_resid_post",
        "context_size": 50,
        "d_in": d_in,
        "expansion_factor": d_sae // d_in,
        "activation_fn_str": "relu",
        "activation_fn_kwargs": {},
        "architecture": "standard",
        "normalize_activations": None,
        "cls_token_only": False,
        "use_patches_only": False,
        "dtype": {"__type__": "torch.dtype", "value": "torch.float32"},
        **config,
    }
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    torch.save(t, folder / "weights.pt")
    return folder, t


@pytest.mark.parametrize(
    ("config", "layer", "tokens"),
    [
        ({}, 6, "all"),
        ({"layer_subtype": "hook_resid_pre", "use_patches_only": True}, 5, "patches"),
        ({"activation_fn_str": "topk", "activation_fn_kwargs": {"k": 5}, "cls_token_only": True}, 6, "cls"),
        ({"layer_subtype": "hook_mlp_out"}, 5, "all"),  # block 5's MLP output, edited where it joins
        ({"layer_subtype": "hook_attn_out", "hook_point_layer": 2}, 2, "all"),
    ],
)
def test_a_prisma_sae_imports_with_its_own_activations(config, layer, tokens, tiny_clip, tmp_path):
    src, t = _prisma(tmp_path / "prisma", 32, 128, **config)
    r = run_cli("import", src, "--model", tiny_clip, "-o", tmp_path / "project")
    assert r.returncode == 0, r.stderr
    sae = SparseAutoencoder.load(tmp_path / "project")
    assert sae.metadata.layer == layer and sae.metadata.token_set == tokens
    sites = {"hook_mlp_out": "mlp_out", "hook_attn_out": "attn_out"}
    assert sae.metadata.site == sites.get(config.get("layer_subtype"), "resid")
    x = torch.randn(50, 32)
    pre = (x - t["b_dec"]) @ t["W_enc"] + t["b_enc"]  # Prisma's encode: b_dec subtracted first
    theirs = _top_k(pre, 5) if config.get("activation_fn_str") == "topk" else pre.relu()  # topk: ReLU on the kept
    _same_map_and_edits(tiny_clip, tmp_path / "project", x, theirs, theirs @ t["W_dec"] + t["b_dec"])


def test_prisma_names_its_open_clip_encoder_and_refuses_what_it_cannot_edit(tmp_path, monkeypatch):
    monkeypatch.setattr("sae.recipes.encoder_cached", lambda spec: False)
    src, _ = _prisma(tmp_path / "b32", 768, 1536)
    r = run_cli("import", src, "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert SparseAutoencoder.load(tmp_path / "out").metadata.backbone == "ViT-B-32:datacomp_xl_s13b_b90k"
    for i, (config, says) in enumerate([
        ({"layer_subtype": "attn.hook_z"}, "not a residual stream, MLP output or attention output"),
        ({"architecture": "gated"}, "'gated' SAE"),
        ({"normalize_activations": "layer_norm"}, "normalises its inputs"),
        ({"activation_fn_str": "topk"}, "gives no k"),
    ]):  # fmt: skip
        src, _ = _prisma(tmp_path / f"bad{i}", 8, 16, **config)
        r = run_cli("import", src, "-o", tmp_path / f"out{i}")
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / f"out{i}").exists()


def _weights(d_in: int, d_sae: int, seed: int, enc_bias: float = 0.0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "W_enc": torch.randn(d_in, d_sae, generator=g) / d_in**0.5,
        "b_enc": torch.randn(d_sae, generator=g) * 0.1 + enc_bias,
        "W_dec": torch.randn(d_sae, d_in, generator=g) / d_sae**0.5,
        "b_dec": torch.randn(d_in, generator=g) * 0.3,
    }


def _saev(path: Path, header: dict, t: dict[str, torch.Tensor]) -> Path:
    """A saev checkpoint as saev's dump writes it: one JSON header line, then torch.save's bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fd:
        fd.write((json.dumps(header) + "\n").encode())
        torch.save(t, fd)
    return path


def _layer_rows(tiny_clip: Path, layer: int, images: Path) -> torch.Tensor:
    """Every token's activation at ``layer`` over the pictures in ``images`` [N * tokens, d]."""
    from sae.backbone import load_backbone
    from sae.images import find_images, load_image

    backbone = load_backbone(str(tiny_clip), layer=layer)
    pixels = torch.stack([backbone.preprocess(load_image(p)) for p in find_images(images)])
    with torch.no_grad():
        return backbone.prefix(pixels).reshape(-1, backbone.width)


EARLY_SAEV = {"d_vit": 32, "exp_factor": 4, "sparsity_coeff": 4e-4, "ghost_grads": False, "seed": 42,
              "n_reinit_samples": 0, "remove_parallel_grads": True, "normalize_w_dec": True}  # fmt: skip


def test_an_early_saev_file_imports_with_normalisation_estimated_from_the_users_pictures(tiny_clip, tmp_path):
    t = _weights(32, 128, seed=3)
    src = _saev(tmp_path / "saev" / "sae.pt", EARLY_SAEV, t)
    images = write_images(tmp_path / "pictures", 6)
    r = run_cli("import", src, "--model", tiny_clip, "--layer", "4", "-o", tmp_path / "project")
    assert r.returncode == 2 and "--images" in r.stderr and not (tmp_path / "project").exists()

    r = run_cli("import", src, "--model", tiny_clip, "--layer", "4", "--images", images, "-o", tmp_path / "project")
    assert r.returncode == 0, r.stderr
    assert "estimated from 6 pictures" in r.stdout, r.stdout
    sae = SparseAutoencoder.load(tmp_path / "project")
    imported = sae.metadata.imported
    assert imported["normalisation"]["pictures"] == 6 and imported["layout"].startswith("saev")
    # saev's own pipeline: its loader's (x - mean) / scalar, then relu((z - b_dec) W_enc + b_enc)
    x = _layer_rows(tiny_clip, 4, images)
    mean = x.mean(0)
    scalar = (x - mean).norm(dim=1).mean() / 32**0.5
    theirs = torch.relu(((x - mean) / scalar - t["b_dec"]) @ t["W_enc"] + t["b_enc"])
    with torch.no_grad():
        assert torch.allclose(sae.encode(x), theirs, atol=1e-4) and (theirs > 0).any()
        assert torch.allclose(sae.decode(theirs), (theirs @ t["W_dec"] + t["b_dec"]) * scalar + mean, atol=1e-4)
    _edits_an_image(tiny_clip, tmp_path / "project")


@pytest.mark.parametrize(
    "activation", [{"cls": "Relu", "params": {"key": "relu"}}, {"cls": "TopK", "params": {"top_k": 6, "key": "topk"}}]
)
def test_a_current_saev_file_imports_without_the_b_dec_subtraction(activation, tiny_clip, tmp_path):
    t = _weights(32, 128, seed=4, enc_bias=1.0)  # positive enough that the top 6 are positive
    header = {"schema": 5, "cfg": {"d_model": 32, "d_sae": 128, "activation": activation, "normalize_w_dec": True},
              "commit": "e7ca004", "lib": "1.0.0"}  # fmt: skip
    src = _saev(tmp_path / "saev" / "sae.pt", header, t)
    r = run_cli("import", src, "--model", tiny_clip, "--layer", "3", "-o", tmp_path / "project")
    assert r.returncode == 0, r.stderr
    assert ("differ only on inputs with fewer than k" in r.stdout) == (activation["cls"] == "TopK")
    x = torch.randn(40, 32)
    pre = x @ t["W_enc"] + t["b_enc"]  # saev since 2025-07-31: no b_dec subtraction, raw inputs
    if activation["cls"] == "TopK":  # the raw top k, kept as they are (all positive here)
        assert (pre.topk(6, dim=-1).values > 0).all()
        theirs = _top_k(pre, 6, relu=False)
    else:
        theirs = pre.relu()
    _same_map_and_edits(tiny_clip, tmp_path / "project", x, theirs, theirs @ t["W_dec"] + t["b_dec"])


def test_saev_files_that_cannot_be_placed_or_reproduced_are_refused(tiny_clip, tmp_path):
    t = _weights(32, 128, seed=5)
    batch = {"schema": 5, "cfg": {"d_model": 32, "d_sae": 128, "activation": {"cls": "BatchTopK", "params": {}}}}
    for i, (src, args, says) in enumerate([
        (_saev(tmp_path / "a" / "sae.pt", {"schema": 5, "cfg": {"d_model": 32}}, t), [], "does not say which layer"),
        (_saev(tmp_path / "b" / "sae.pt", batch, t), ["--layer", "3"], "BatchTopK"),
        (_saev(tmp_path / "c" / "sae.pt", {"schema": 5, "cfg": {}}, {"W_enc": t["W_enc"]}), ["--layer", "3"],
         "no 'b_enc'"),
        (_saev(tmp_path / "d" / "sae.pt", {"schema": 2, "cfg": {}}, t), ["--layer", "3", "--model", tiny_clip], None),
    ]):  # fmt: skip
        r = run_cli("import", src, *args, "-o", tmp_path / f"out{i}")
        if says is None:  # the fit to the named encoder's layer is checked: 32 wide fits, an embedding (24) does not
            assert r.returncode == 0, r.stderr
            r = run_cli("import", src, "--layer", "embedding", "--model", tiny_clip, "-o", tmp_path / "wrong")
            says, i = "width", "wrong"
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / f"out{i}").exists() and not (tmp_path / "wrong").exists()


def _msae(folder: Path, name: str, d_in: int, d_sae: int, tied: bool = False) -> tuple[Path, dict]:
    """An MSAE checkpoint as its train.py saves it: configuration in the name, statistics beside the weights."""
    g = torch.Generator().manual_seed(6)
    state = {
        "pre_bias": torch.randn(d_in, generator=g) * 0.1,
        "encoder": torch.randn(d_in, d_sae, generator=g) / d_in**0.5,
        "latent_bias": torch.randn(d_sae, generator=g) * 0.1 + 0.5,
        "latents_activation_frequency": torch.zeros(d_sae, dtype=torch.int64),
    }
    if not tied:
        state["decoder"] = torch.randn(d_sae, d_in, generator=g) / d_sae**0.5
    ckpt = {"model": state, "mean_center": torch.randn(d_in, generator=g), "scaling_factor": 0.37, "target_norm": 1.0}
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, folder / name)
    return folder / name, ckpt


@pytest.mark.parametrize(
    ("name", "k"),
    [
        ("96_24_TopKReLU_8_False_False_0.0_cc3m.pth", 8),
        ("96_24_ReLU_003_True_False_0.0_imagenet.pth", 0),  # tied: the decoder is the encoder's transpose
        ("96_24_TopKReLU_8_12_RW_False_False_0.0_cc3m.pth", 8),  # Matryoshka: nesting size and weighting
    ],
)
def test_an_msae_checkpoint_imports_with_its_own_activations(name, k, tiny_clip, tmp_path):
    src, ckpt = _msae(tmp_path / "msae", name, 24, 96, tied="_True_False_" in name)
    r = run_cli("import", src, "--model", tiny_clip, "-o", tmp_path / "project")
    assert r.returncode == 0, r.stderr
    sae = SparseAutoencoder.load(tmp_path / "project")
    assert sae.metadata.layer == -2 and sae.metadata.imported["layout"] == "MSAE"
    m = ckpt["model"]
    dec = m.get("decoder", m["encoder"].T)
    x = torch.randn(40, 24) * 3
    pre = ((x - ckpt["mean_center"]) * 0.37 - m["pre_bias"]) @ m["encoder"] + m["latent_bias"]
    theirs = _top_k(pre, k) if k else pre.relu()
    recon = (theirs @ dec + m["pre_bias"]) / 0.37 + ckpt["mean_center"]  # MSAE's unprocess_data
    _same_map_and_edits(tiny_clip, tmp_path / "project", x, theirs, recon)


def test_msae_checkpoints_it_cannot_reproduce_are_refused(tmp_path):
    for i, (name, says) in enumerate([
        ("96_24_TopKReLU_8_False_False_30.0_cc3m.pth", "tanh soft cap"),
        ("96_24_TopKReLU_8_False_True_0.0_cc3m.pth", "standardises each input"),
        ("96_24_JumpReLU_8_False_False_0.0_cc3m.pth", "JumpReLU"),
        ("msae_final.pth", "configuration in its name"),
        ("96_48_ReLU_003_False_False_0.0_cc3m.pth", "do not match the 96 x 48"),
    ]):  # fmt: skip
        src, _ = _msae(tmp_path / f"m{i}", name, 24, 96)
        r = run_cli("import", src, "-o", tmp_path / f"out{i}")
        assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert not (tmp_path / f"out{i}").exists()


def test_a_file_written_by_the_saev_package_imports_with_the_activations_saev_computes(tiny_clip, tmp_path):
    import saev.config  # saev 0.1.0, in the dev extras, writes the early format
    import saev.nn as saev_nn

    model = saev_nn.SparseAutoencoder(saev.config.SparseAutoencoder(d_vit=32, exp_factor=4, n_reinit_samples=0))
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    saev_nn.dump(str(tmp_path / "saev" / "sae.pt"), model)
    images = write_images(tmp_path / "pictures", 5, seed=1)
    r = run_cli("import", tmp_path / "saev", "--model", tiny_clip, "--layer", "5", "--images", images,
                "-o", tmp_path / "project")  # fmt: skip
    assert r.returncode == 0, r.stderr
    sae = SparseAutoencoder.load(tmp_path / "project")
    x = _layer_rows(tiny_clip, 5, images)
    mean = x.mean(0)
    scalar = (x - mean).norm(dim=1).mean() / 32**0.5
    with torch.no_grad():
        z_hat, theirs, _ = model((x - mean) / scalar)  # saev's forward on its loader's normalised inputs
        assert torch.allclose(sae.encode(x), theirs, atol=1e-4) and (theirs > 0).any()
        assert torch.allclose(sae.decode(theirs), z_hat * scalar + mean, atol=1e-4)


def _damaged(kind: str, tmp_path: Path) -> Path:
    """One published file of each layout whose fields hold what their readers did not expect."""
    if kind == "daujotas integer weights":
        src, t = _daujotas(tmp_path / "d")
        torch.save(t | {"encoder.weight": t["encoder.weight"].int()}, src / "sparse_autoencoder_128.pth")
        return src
    if kind == "daujotas complex bias":
        src, t = _daujotas(tmp_path / "d")
        torch.save(t | {"enc_bias": t["enc_bias"].to(torch.complex64)}, src / "sparse_autoencoder_128.pth")
        return src
    if kind == "prisma k as a word":
        return _prisma(tmp_path / "p", 24, 96, activation_fn_str="topk", activation_fn_kwargs={"k": "eight"})[0]
    if kind == "prisma one-dimensional encoder":
        src, t = _prisma(tmp_path / "p", 24, 96)
        torch.save(t | {"W_enc": t["W_enc"].flatten()}, src / "weights.pt")
        return src
    if kind == "saev top_k as a word":
        header = {"schema": 5, "cfg": {"activation": {"cls": "TopK", "params": {"top_k": "four"}}}}
        return _saev(tmp_path / "s" / "sae.pt", header, _weights(24, 96, 0))
    if kind == "saev infinite b_dec":  # folded into b_enc on reading: the sentence names the file's own tensor
        t = _weights(24, 96, 0) | {"b_dec": torch.full((24,), float("inf"))}
        return _saev(tmp_path / "s" / "sae.pt", {"schema": 5, "cfg": {}}, t)
    if kind == "msae scaling factor as a word":
        src, ckpt = _msae(tmp_path / "m", "96_24_TopKReLU_8_False_False_0.0_cc3m.pth", 24, 96)
        torch.save(ckpt | {"scaling_factor": "big"}, src)
        return src
    assert kind == "msae soft cap nan"
    return _msae(tmp_path / "m", "96_24_TopKReLU_8_False_False_nan_cc3m.pth", 24, 96)[0]


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("daujotas integer weights", "'encoder.weight' holds int32 values, not weights"),
        ("daujotas complex bias", "'enc_bias' holds complex64 values"),
        ("prisma k as a word", "gives no k between 1 and 96"),
        ("prisma one-dimensional encoder", "do not fit together"),
        ("saev top_k as a word", "gives no top_k between 1 and 96"),
        ("saev infinite b_dec", "'b_dec' holds NaN or infinite values"),
        ("msae scaling factor as a word", "scaling_factor as str, not a number"),
        ("msae soft cap nan", "configuration in its name"),
    ],
)
def test_published_files_whose_fields_are_damaged_get_one_sentence(kind, says, tmp_path):
    r = run_cli("import", _damaged(kind, tmp_path), "--layer", "3", "-o", tmp_path / "out")
    assert r.returncode == 2 and says in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "out").exists()
