"""The edit engine end to end on quick demo models and a tiny Kandinsky-shaped decoder:
index, labels, search, what fires, presets and the batch edit command."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from helpers import copy_quick_demo, run_cli
from PIL import Image

from sae import presets
from sae.backbone import load_backbone
from sae.decoders import DecodeSettings
from sae.model import SparseAutoencoder
from sae.png import preset_in
from sae.session import Session
from sae.steer import Edit


@pytest.fixture(scope="module")
def quick(quick_demo, tmp_path_factory):
    """Quick demo CLIP + SAE, a tiny random decoder of the demo's shape, and some world images."""
    return copy_quick_demo(quick_demo, tmp_path_factory.mktemp("quick"), 64)


def _cli(*args, cwd=None):
    return run_cli(*args, cwd=cwd)


def test_index_labels_and_search(quick):
    root, images = quick
    sae_dir = root / "demo" / "sae"
    r = _cli("index", "--sae", sae_dir, "--images", images)
    assert r.returncode == 0, r.stderr
    labels = json.loads((sae_dir / "labels.json").read_text())["labels"]
    assert len(labels) == SparseAutoencoder.load(sae_dir).d_sae
    vocab = {"cat", "dog", "cowboy hat", "night", "red object", "moon", "room"}
    assert any(v["label"] in vocab for v in labels.values())
    # the demo SAE names its encoder by a path from its own folder, found from any working folder
    assert SparseAutoencoder.load(sae_dir).metadata.backbone == "local-dir:../clip"
    r = _cli("features", "--sae", sae_dir, "--search", "cat", "--top", "3", cwd=images)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.strip().splitlines()) == 4
    # each hit shows its slider unit, the latent's typical max from the index
    from sae.features import FeatureIndex

    header, first = r.stdout.strip().splitlines()[:2]
    assert "unit" in header
    latent, _, unit = first.split()[:3]
    assert abs(float(unit) - float(FeatureIndex.load(sae_dir).typical_max()[int(latent)])) < 0.01
    # incremental: a second run over the same folder adds nothing and keeps the stats
    before = FeatureIndex.load(sae_dir)
    assert _cli("index", "--sae", sae_dir, "--images", images, "--no-labels").returncode == 0
    after = FeatureIndex.load(sae_dir)
    assert after.tokens == before.tokens == 64 * 65 and torch.equal(after.top_values, before.top_values)
    assert int(after.evidence.n) == 64 and torch.equal(after.evidence.code_embed, before.evidence.code_embed)


def test_index_keeps_image_evidence_as_if_computed_at_once(quick, tmp_path):
    """Indexed in two runs (a folder that grows), the evidence's correlation of every latent with a
    query equals numpy's Pearson correlation of the latent's image-level activation with the
    images' centred zero-shot scores, computed in one go."""
    import shutil

    from sae.features import build_index

    root, images = quick
    sae = SparseAutoencoder.load(root / "demo" / "sae")
    bb = load_backbone(str(root / "demo" / "clip"), layer=sae.metadata.layer)
    folder, grown = tmp_path / "sae", tmp_path / "images"
    shutil.copytree(root / "demo" / "sae", folder, ignore=shutil.ignore_patterns("index", "labels.json"))
    grown.mkdir()
    paths = sorted(images.glob("*.png"))
    for p in paths[:20]:
        shutil.copy(p, grown / p.name)
    build_index(folder, bb, sae, grown, progress=False)
    for p in paths[20:]:
        shutil.copy(p, grown / p.name)
    index = build_index(folder, bb, sae, grown, progress=False)
    evidence = index.evidence
    assert int(evidence.n) == len(paths)

    with torch.no_grad():
        pixels = torch.stack([bb.preprocess(Image.open(p).convert("RGB")) for p in paths])
        resid = bb.prefix(pixels)
        f = sae.encode(resid)
        codes = f.amax(1).double().numpy()
    # the class-token and image-maximum sums, and the tokens each latent's edits touch by them
    torch.testing.assert_close(index.class_total, f[:, 0].sum(0), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(index.peak_total, f.amax(1).sum(0), rtol=1e-4, atol=1e-3)
    share = f[:, 0].sum(0) / f.amax(1).sum(0)
    fired = f.amax(1).sum(0) > 0
    homes = [index.home_tokens(j) for j in range(sae.d_sae)]
    assert homes == ["patches" if fired[j] and share[j] < 0.1 else "all" for j in range(sae.d_sae)]
    assert {"patches", "all"} <= set(homes)  # both kinds of latent exist in the quick SAE

    with torch.no_grad():
        emb = torch.nn.functional.normalize(bb.suffix(resid), dim=-1).double().numpy()
        q = torch.nn.functional.normalize(bb.encode_text(["a cat"]), dim=-1)[0]
    centre = torch.randn(q.shape[0], generator=torch.Generator().manual_seed(1)) * 0.1
    qc = torch.nn.functional.normalize(q - centre, dim=-1).double().numpy()
    scores = emb @ qc
    varied = codes.std(0) > 1e-6
    expected = np.array([np.corrcoef(codes[:, j], scores)[0, 1] if varied[j] else 0.0 for j in range(codes.shape[1])])
    got = evidence.correlation(q, centre).numpy()
    assert varied.sum() > 10
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("centre", [True, False])
def test_search_scores_from_the_half_precision_table_agree_with_the_exact_match(centre):
    """Search reads one half-precision [F, 2e] table (a wide SAE's query is bound by reading it);
    its scores must rank as the exact effect alignment + image evidence does."""
    from sae.evidence import ImageEvidence
    from sae.labels import FeatureDirections

    gen = torch.Generator().manual_seed(1)
    f, e = 400, 32
    evidence = ImageEvidence.empty(f, e)
    for _ in range(5):  # 5 batches of 40 images; sparse codes, some latents never fire
        codes = torch.relu(torch.randn(40, f, generator=gen) - 1.0) * (torch.arange(f) % 7 != 0)
        evidence.add(codes, torch.randn(40, e, generator=gen) + 2.0)
    effects = torch.nn.functional.normalize(torch.randn(f, e, generator=gen) + 1.0, dim=-1)
    directions = FeatureDirections(effects, torch.randn(e, generator=gen) if centre else None, evidence)
    for _ in range(5):
        query = torch.nn.functional.normalize(torch.randn(e, generator=gen), dim=-1)
        exact, fast = directions.match(query), directions.search_scores(query)
        assert torch.allclose(fast, exact, atol=5e-3), (fast - exact).abs().max()
        assert set(exact.topk(10).indices.tolist()) == set(fast.topk(10).indices.tolist())


def test_search_compares_centred_directions(tmp_path):
    """A large component shared by every latent's effect (CLIP's modality gap) must not decide the
    ranking: the latent whose own part points at the query wins. Folders labelled before the text
    centre was kept still load and search uncentred."""
    from safetensors.torch import save_file

    from sae.labels import FeatureDirections, load_directions, save_directions, search

    gen = torch.Generator().manual_seed(0)
    common, text_common = torch.randn(32, generator=gen), torch.randn(32, generator=gen)
    own = torch.randn(50, 32, generator=gen)
    effects = torch.nn.functional.normalize(3 * common + own, dim=-1)
    query = torch.nn.functional.normalize(3 * text_common + own[7], dim=-1)
    saved = FeatureDirections(effects, 3 * text_common)
    save_directions(tmp_path, saved)
    loaded = load_directions(tmp_path)
    assert torch.equal(loaded.effects, effects) and torch.equal(loaded.text_centre, saved.text_centre)
    assert search("", query, loaded, {}, top=1)[0].latent == 7
    assert search("", query, FeatureDirections(effects, None), {}, top=1)[0].latent != 7  # uncentred: the gap decides
    save_file({"directions": effects}, str(tmp_path / "index" / "directions.safetensors"))
    assert load_directions(tmp_path).text_centre is None


def test_rename_persists_and_outranks_relabelling(quick):
    root, images = quick
    sae_dir = root / "demo" / "sae"
    if not (sae_dir / "index").exists():
        assert _cli("index", "--sae", sae_dir, "--images", images).returncode == 0
    assert _cli("features", "--sae", sae_dir, "--rename", "5", "my favourite").returncode == 0
    assert _cli("index", "--sae", sae_dir, "--images", images).returncode == 0
    labels = json.loads((sae_dir / "labels.json").read_text())["labels"]
    assert labels["5"] == {"label": "my favourite", "source": "user"}
    # searching a person's name for a latent finds it first, whatever its effects and evidence say
    r = _cli("features", "--sae", sae_dir, "--search", "My favourite", "--top", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1].split()[0] == "5"


def test_what_fires_lists_active_latents(quick):
    root, images = quick
    r = _cli("features", "--sae", root / "demo" / "sae", "--image", next(images.glob("*.png")), "--top", "5")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert re.fullmatch(r"coverage: the SAE explains -?\d+% of this picture \(.+\)", lines[0])
    rows = lines[next(i for i, line in enumerate(lines) if line.split()[:1] == ["latent"]) + 1 :]
    acts = [float(line.split()[1]) for line in rows]
    assert len(rows) == 5 and acts == sorted(acts, reverse=True) and acts[0] > 0


def test_session_empty_edit_is_the_unedited_embedding(quick):
    root, images = quick
    sae = SparseAutoencoder.load(root / "demo" / "sae")
    bb = load_backbone(str(root / "demo" / "clip"), layer=sae.metadata.layer)
    s = Session(bb, sae)
    s.set_image(Image.open(next(images.glob("*.png"))))
    with torch.no_grad():
        reference = bb.encode_image(bb.preprocess(s.current.image)[None])[0]
    assert torch.equal(s.embedding([]), s.current.embedding)
    assert torch.allclose(s.embedding([]), reference, atol=1e-5)
    assert not torch.equal(s.embedding([Edit(s.fires(1)[0].latent, "set", 0.0)]), s.current.embedding)


def test_batch_edit_is_bit_identical_and_carries_its_preset(quick):
    root, images = quick
    sae_dir = root / "demo" / "sae"
    pics = sorted(images.glob("*.png"))[:2]
    sha = presets.sae_sha256(sae_dir)
    sae = SparseAutoencoder.load(sae_dir)
    preset = presets.Preset(
        presets.SaeIdentity(sha, sae.d_sae, sae.d_in),
        [Edit(3, "add", 2.0, None, "x"), Edit(9, "set", 0.0, (0, 1, 2))],
        DecodeSettings(steps=4, seed=3, decoder=str(root / "decoder")),
    )
    preset.save(root / "p.json")
    for out in ("a", "b"):
        r = _cli("edit", *pics, "--preset", root / "p.json", "--sae", sae_dir, "-o", root / out)
        assert r.returncode == 0, r.stderr
    for p in pics:
        assert (root / "a" / p.name).read_bytes() == (root / "b" / p.name).read_bytes()
        carried = preset_in(root / "a" / p.name)
        assert carried.edits == preset.edits and carried.decoder.seed == 3
    r = _cli("edit", pics[0], "--preset", root / "p.json", "--sae", sae_dir, "-o", root / "c", "--seed", "4")
    assert (root / "c" / pics[0].name).read_bytes() != (root / "a" / pics[0].name).read_bytes()
    r = _cli("edit", pics[0], "--preset", root / "p.json", "--sae", sae_dir, "-o", root / "w", "--region", "whole")
    assert r.returncode == 0, r.stderr
    assert preset_in(root / "w" / pics[0].name).decoder.region == "whole"
    assert (root / "w" / pics[0].name).read_bytes() != (root / "a" / pics[0].name).read_bytes()


def test_the_regions_the_cli_offers_are_the_decoders():
    from sae.cli import build_parser
    from sae.decoders.region import REGIONS

    edit = build_parser()._subparsers._group_actions[0].choices["edit"]
    offered = next(a for a in edit._actions if a.dest == "region").choices
    assert tuple(offered) == REGIONS  # written out in the CLI, so that parsing arguments needs no torch
    from sae.steer import TOKENS

    for command in ("edit", "features"):
        p = build_parser()._subparsers._group_actions[0].choices[command]
        assert tuple(next(a for a in p._actions if a.dest == "tokens").choices) == ("home", *TOKENS)


def test_batch_edit_refuses_a_preset_for_another_sae(quick):
    root, images = quick
    p = presets.Preset(presets.SaeIdentity("0" * 64, 16, 8, "other", 1), [Edit(1, "add", 1.0)])
    p.save(root / "other.json")
    r = _cli(
        "edit",
        next(images.glob("*.png")),
        "--preset",
        root / "other.json",
        "--sae",
        root / "demo" / "sae",
        "-o",
        root / "x",
        "--decoder",
        root / "decoder",
    )
    assert r.returncode == 2 and "made for another SAE" in r.stderr and "Traceback" not in r.stderr


def test_quick_edit_flags_and_bad_flag(quick):
    root, images = quick
    r = _cli(
        "edit",
        next(images.glob("*.png")),
        "--add",
        "7=3",
        "--sae",
        root / "demo" / "sae",
        "-o",
        root / "q",
        "--decoder",
        root / "decoder",
        "--steps",
        "3",
    )
    assert r.returncode == 0, r.stderr
    assert preset_in(next((root / "q").glob("*.png"))).edits[0].latent == 7
    r = _cli(
        "edit",
        next(images.glob("*.png")),
        "--add",
        "7=3",
        "--sae",
        root / "demo" / "sae",
        "-o",
        root / "d",
        "--decoder",
        root / "decoder",
    )  # no --steps and no preset: the decoder's own default
    assert r.returncode == 0, r.stderr
    assert preset_in(next((root / "d").glob("*.png"))).decoder.steps == 30
    r = _cli(
        "edit",
        next(images.glob("*.png")),
        "--add",
        "seven",
        "--sae",
        root / "demo" / "sae",
        "-o",
        root / "q",
        "--decoder",
        root / "decoder",
    )
    assert r.returncode == 2 and "is not LATENT=VALUE" in r.stderr
    # a quick edit touches the tokens where its latent fires (the index says), or those --tokens names
    from sae.features import FeatureIndex, has_index

    if not has_index(root / "demo" / "sae"):  # (run alone, without the index test before it)
        assert _cli("index", "--sae", root / "demo" / "sae", "--images", images, "--no-labels").returncode == 0
    index = FeatureIndex.load(root / "demo" / "sae")
    patchy = next(j for j in range(len(index.count)) if index.home_tokens(j) == "patches")
    for flag, expected in (((), "patches"), (("--tokens", "class"), "class")):
        out = root / f"t-{expected}"
        r = _cli(
            "edit",
            next(images.glob("*.png")),
            "--add",
            f"{patchy}=2",
            *flag,
            "--sae",
            root / "demo" / "sae",
            "-o",
            out,
            "--decoder",
            root / "decoder",
            "--steps",
            "2",
        )
        assert r.returncode == 0, r.stderr
        assert preset_in(next(out.glob("*.png"))).edits[0].tokens == expected


def test_an_edit_limited_to_brushed_patches_repaints_only_there(quick):
    """With the edit region on, an edit on the top-left patches changes only the latents under
    them (grown by one cell): everywhere else the decoder's autoencoder gets the input's own
    latents back. Repainting the whole image changes them everywhere."""
    from sae.decoders.region import GROW
    from sae.decoders.registry import load_decoder
    from sae.steer import Edit

    root, images = quick
    sae = SparseAutoencoder.load(root / "demo" / "sae")
    bb = load_backbone(str(root / "demo" / "clip"), layer=sae.metadata.layer)
    s = Session(bb, sae, load_decoder(str(root / "decoder"), bb))
    s.set_image(Image.open(next(images.glob("*.png"))))
    grid = int(round(bb.n_patches**0.5))
    brushed = tuple(r * grid + c for r in range(grid // 4) for c in range(grid // 4))
    latent = int(torch.argmax(sae.W_dec.norm(dim=1)))
    edits = [Edit(latent, "add", 50.0, brushed)]
    area, side = s.brushed(edits), s.current.image.width // 4  # over the picture: its top-left quarter
    assert area[:side, :side].all() and area.sum() == side * side and s.brushed([Edit(latent, "add", 50.0)]) is None
    movq = s.decoder.img2img.movq
    painted = []
    decode = movq.decode
    movq.decode = lambda z, *a, **k: painted.append(z.clone()) or decode(z, *a, **k)
    s.render([], DecodeSettings(steps=4, strength=0.9, seed=1))  # no edit: the input's latents as they are
    s.render(edits, DecodeSettings(steps=4, strength=0.9, seed=1))
    s.render(edits, DecodeSettings(steps=4, strength=0.9, seed=1, region="whole"))
    as_is, local, whole = painted
    h = as_is.shape[-1] * (grid // 4) // grid + GROW  # latent cells under the brushed patches, grown
    outside = torch.ones_like(as_is, dtype=torch.bool)
    outside[..., :h, :h] = False
    assert torch.equal(local[outside], as_is[outside])
    assert not torch.allclose(local[~outside], as_is[~outside], atol=1e-2)
    assert not torch.allclose(whole[outside], as_is[outside], atol=1e-2)


def test_causal_preview_paints_the_latent_alone_and_leaves_the_image(quick):
    from sae.decoders import DecodeSettings
    from sae.decoders.registry import load_decoder
    from sae.neutral import preview_canvas

    root, images = quick
    sae = SparseAutoencoder.load(root / "demo" / "sae")
    bb = load_backbone(str(root / "demo" / "clip"), layer=sae.metadata.layer)
    s = Session(bb, sae, load_decoder(str(root / "decoder"), bb))
    s.set_image(Image.open(next(images.glob("*.png"))))
    before = s.current.embedding.clone()
    settings = DecodeSettings(steps=4, strength=0.8, seed=1)
    latent = int(torch.argmax(sae.W_dec.norm(dim=1)))
    nothing = np.asarray(s.causal_preview(latent, 0.0, settings))
    canvas = preview_canvas(bb)
    plain = np.asarray(s.decoder.decode(s._cache(canvas).embedding[None], canvas, settings))
    assert np.array_equal(nothing, plain)  # adding zero paints the canvas as it is
    strong = np.asarray(s.causal_preview(latent, 50.0, settings))
    assert not np.array_equal(strong, plain)
    assert torch.equal(s.current.embedding, before)
    r = _cli(
        "features",
        "--sae",
        root / "demo" / "sae",
        "--preview",
        latent,
        "--decoder",
        root / "decoder",
        "-o",
        root / "prev" / "p.png",
    )
    assert r.returncode == 0, r.stderr
    assert Image.open(root / "prev" / "p.png").size == (64, 64)
    r = _cli("features", "--sae", root / "demo" / "sae", "--preview", 10**6, "--decoder", root / "decoder")
    assert r.returncode == 2 and "does not exist" in r.stderr


@pytest.mark.parametrize("damage", ["labels it cannot have", "directions cut short", "index of another width"])
def test_damaged_or_mismatched_files_beside_an_sae_are_left_out_or_named(tmp_path, damage):
    import shutil

    from safetensors.torch import save_file

    from sae.demo.build import DEMO

    if not (DEMO / "sae" / "index").is_dir():
        pytest.skip("the shipped demo SAE is not built")
    folder = tmp_path / "sae"
    shutil.copytree(DEMO / "sae", folder, ignore=shutil.ignore_patterns("thumbs"))
    if damage == "labels it cannot have":  # a hand-edited file: a latent past the width, a novel
        raw = json.loads((folder / "labels.json").read_text())
        raw["labels"] |= {"99999": {"label": "cat", "source": "user"}, "5": {"label": "x" * 10**5}}
        (folder / "labels.json").write_text(json.dumps(raw))
    elif damage == "directions cut short":
        path = folder / "index" / "directions.safetensors"
        path.write_bytes(path.read_bytes()[:3000])
    else:  # weights of another width put beside the index
        d_in, d_sae = 128, 512
        save_file(
            {"W_enc": torch.randn(d_in, d_sae), "b_enc": torch.zeros(d_sae), "W_dec": torch.randn(d_sae, d_in)}
            | {"b_dec": torch.zeros(d_in)},
            folder / "sae_weights.safetensors",
        )
        cfg = json.loads((folder / "cfg.json").read_text())
        (folder / "cfg.json").write_text(json.dumps(cfg | {"d_sae": d_sae}))
    r = _cli("features", "--sae", folder, "--model", f"local-dir:{DEMO / 'clip'}", "--search", "cat", "--top", "3")
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr
    if damage == "labels it cannot have":
        assert r.returncode == 0, r.stderr
        from sae.labels import read_labels

        assert "cat" in r.stdout and len(read_labels(folder)[5]) == 200  # a label is cut to a name's length
    else:
        sentence = "is damaged" if damage == "directions cut short" else "was made for an SAE with 1,392 latents"
        assert r.returncode == 2 and sentence in r.stderr and "index again" in r.stderr
