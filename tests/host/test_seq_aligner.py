"""seq_aligner on ComfyUI's real CLIP BPE tokenizer, including words of several tokens."""
import pytest
import torch

from vp2p_dev import devkit as tl


@pytest.fixture(scope="module")
def sa():
    return tl.core.seq_aligner


@pytest.fixture(scope="module")
def encode(host):
    import comfy.sd1_clip
    hf = comfy.sd1_clip.SD1Tokenizer().clip_l.tokenizer
    return lambda w: hf(w)["input_ids"][1:-1]


def comfy_tokens(text):
    """Token ids (without weights) exactly as CLIPTextEncode's tokenizer lays them out."""
    import comfy.sd1_clip
    return [t for t, _ in comfy.sd1_clip.SD1Tokenizer().tokenize_with_weights(text)["l"][0]]


def test_positions_match_comfy_tokenizer(sa, encode):
    text = "a hippopotamus, riding a motorbike"
    ids = comfy_tokens(text)
    for w in ["hippopotamus", "motorbike", "a", "hippopotamus,"]:
        idx = sa.token_indices(encode, text, w)
        assert idx, w
        want = [t for part in w.split() for t in encode(part)]
        if w == "a":
            assert idx == [1, 7]
        else:
            assert [ids[i] for i in idx] == want


def test_swap_mapper_one_token(sa, encode):
    m = sa.swap_mapper(encode, "a cat riding a bike", "a dog riding a bike")
    assert torch.equal(m, torch.eye(77))  # 1:1 swap keeps every position, words differ in the prompt only
    p = torch.rand(2, 5, 77).softmax(-1)
    assert torch.allclose(p @ m, p)


def test_swap_mapper_different_token_counts(sa, encode):
    src, tgt = "a cat riding a bike", "a hippopotamus riding a bike"   # 1 token -> 3 tokens
    m = sa.swap_mapper(encode, src, tgt)
    assert torch.allclose(m[2, 2:5], torch.full((3,), 1 / 3))
    # later words shift by two positions; BOS stays
    assert m[0, 0] == 1 and m[3, 5] == 1 and m[4, 6] == 1 and m[5, 7] == 1
    # EOS (source 6) -> target 8, padding follows
    assert m[6, 8] == 1 and m[60, 62] == 1
    # every source row keeps its probability mass up to the truncated tail
    p = torch.rand(3, 77).softmax(-1)
    assert torch.allclose((p @ m).sum(-1), p[:, :75].sum(-1), atol=1e-6)  # last 2 pads drop out
    back = sa.swap_mapper(encode, tgt, src)       # 3 tokens -> 1 token: averages the three
    assert torch.allclose(back[2:5, 2], torch.ones(3)) and back[5, 3] == 1


def test_swap_mapper_equal_length_multi_token_words_pair_one_to_one(sa, encode):
    """prompt-to-prompt's mapper: a changed word with as many tokens as the source word maps
    token k -> token k (not one averaged map over the whole token block)."""
    src, tgt = "a man riding a bike.", "a man riding a motorbike."
    assert len(encode("bike.")) == len(encode("motorbike.")) == 2 and encode("bike.") != encode("motorbike.")
    m = sa.swap_mapper(encode, src, tgt)
    assert m[5, 5] == 1 and m[6, 6] == 1 and m[5, 6] == 0 and m[6, 5] == 0   # 'bike'->'motorbike', '.'->'.'
    assert torch.equal(m, torch.eye(77))
    # a source attention that differs between the two tokens stays different in the target
    p = torch.zeros(1, 77)
    p[0, 5], p[0, 6] = 0.7, 0.1
    assert (p @ m)[0, 5] == pytest.approx(0.7) and (p @ m)[0, 6] == pytest.approx(0.1)
    # unequal lengths keep the word-level spreading
    m2 = sa.swap_mapper(encode, "a man riding a bike", "a man riding a hippopotamus")
    assert torch.allclose(m2[5, 5:8], torch.full((3,), 1 / 3))


def test_swap_rejects_different_word_counts_and_suggests_refine(sa, encode):
    with pytest.raises(sa.AlignmentError, match="refine"):
        sa.swap_mapper(encode, "a cat", "a big cat")


def test_refine_alignment_added_and_removed_words(sa, encode):
    mapper, alphas = sa.refine_alignment(encode, "a cat riding a bike", "a fluffy cat riding a red bike")
    # target: a(1) fluffy(2) cat(3) riding(4) a(5) red(6) bike(7) EOS(8)
    assert alphas[[2, 6]].tolist() == [0, 0]
    assert alphas[[0, 1, 3, 4, 5, 7, 8, 9]].tolist() == [1] * 8
    assert mapper[[1, 3, 4, 5, 7, 8, 9]].tolist() == [1, 2, 3, 4, 5, 6, 7]
    # removed words: target shorter than source
    mapper, alphas = sa.refine_alignment(encode, "a fluffy cat riding a red bike", "a cat riding a bike")
    assert alphas[:7].tolist() == [1] * 7
    assert mapper[1:7].tolist() == [1, 3, 4, 5, 7, 8]


def test_refine_multi_token_words(sa, encode):
    mapper, alphas = sa.refine_alignment(encode, "a hippopotamus in water", "a hippopotamus in muddy water")
    assert mapper[2:5].tolist() == [2, 3, 4] and alphas[2:5].tolist() == [1, 1, 1]
    assert alphas[6] == 0 and mapper[7] == 6 and alphas[7] == 1


def test_align_words_is_global(sa):
    assert sa.align_words(list("abcd"), list("axcd")) == [(0, 0), (None, 1), (1, None), (2, 2), (3, 3)]


def test_equalizer(sa, encode):
    eq = sa.equalizer(encode, "a hippopotamus riding a bike", ["hippopotamus", "bike"], [2.0, 0.5])
    assert eq[2:5].tolist() == [2.0] * 3 and eq[7] == 0.5
    assert (eq == 1).sum() == 77 - 4
    with pytest.raises(sa.AlignmentError, match="zebra"):
        sa.equalizer(encode, "a cat", ["zebra"], [2.0])


def test_too_long_prompt(sa, encode):
    with pytest.raises(sa.AlignmentError, match="shorten"):
        sa.swap_mapper(encode, "cat " * 80, "dog " * 80)


def test_describe(sa, encode):
    d = sa.describe(encode, "a cat riding a bike", "a hippopotamus riding a bike", "swap")
    assert d["ok"] and d["pairs"] == [{"source": "cat", "target": "hippopotamus", "op": "swap"}]
    assert any("has 3" in w for w in d["warnings"])
    d = sa.describe(encode, "a cat", "a big cat", "swap")
    assert not d["ok"] and "refine" in d["error"]
    d = sa.describe(encode, "a cat", "a big cat", "refine", blend_words=["cat"])
    assert d["ok"] and [t["op"] for t in d["target"]] == ["keep", "added", "keep"]
    assert [t["blend"] for t in d["target"]] == [False, False, True]
    d = sa.describe(encode, "a cat", "a cat", "reweight", reweight_words=["cat"], reweight_scales=[2])
    assert d["target"][1]["scale"] == 2.0
