"""Token-level alignment of a source and a target prompt (prompt-to-prompt's seq_aligner).

Prompts are split into whitespace-separated words and each word is tokenised on its own,
exactly like ComfyUI's SD1 tokenizer does before it concatenates the tokens, so the token
positions computed here are the positions in the 77-token conditioning CLIPTextEncode makes
(BOS at 0, then the words' tokens, then EOS/padding). `encode(word) -> [token ids]` is the
CLIP BPE tokenizer without BOS/EOS; keeping it a callable keeps this module host-free.

- swap: same number of words; a changed word with as many tokens as the source word is
  paired token by token (prompt-to-prompt's mapper); one with a different token count gets
  the source word's attention spread over its tokens (so each attention row keeps its mass);
- refine: words are aligned by a global alignment (longest common subsequence of words,
  no substitutions): shared words copy the source attention, added words keep their own;
- reweight: one scale per chosen word's tokens.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

MAX_TOKENS = 77
Encode = Callable[[str], list]


class AlignmentError(ValueError):
    pass


def split_words(text: str) -> list[str]:
    return text.replace("\n", " ").split()


def tokenize(encode: Encode, text: str, max_len: int = MAX_TOKENS):
    """[(word, [token ids], first position)] with positions counted after BOS."""
    out, pos = [], 1
    for w in split_words(text):
        ids = list(encode(w))
        out.append((w, ids, pos))
        pos += len(ids)
    if pos + 1 > max_len:
        raise AlignmentError(f"the prompt {text!r} has {pos - 1} tokens; at most {max_len - 2} fit "
                             f"in one CLIP window: shorten it.")
    return out


def _content_end(words) -> int:
    """Position of EOS: one past the last content token."""
    return words[-1][2] + len(words[-1][1]) if words else 1


def token_indices(encode: Encode, text: str, word: str, max_len: int = MAX_TOKENS) -> list[int]:
    """Positions of every token of every occurrence of `word` (which may itself be several
    words or tokens) in the tokenised prompt."""
    needle = [t for w in split_words(word) for t in encode(w)]
    if not needle:
        return []
    seq = [t for _, ids, _ in tokenize(encode, text, max_len) for t in ids]
    hits = []
    for i in range(len(seq) - len(needle) + 1):
        if seq[i:i + len(needle)] == needle:
            hits += range(1 + i, 1 + i + len(needle))
    return sorted(set(hits))


def _tail(mapper_fill, src_end: int, tgt_end: int, max_len: int):
    """EOS and padding follow the content: target position p copies source p - shift."""
    shift = tgt_end - src_end
    for t in range(tgt_end, max_len):
        s = t - shift
        mapper_fill(min(max(s, 0), max_len - 1), t)


def swap_mapper(encode: Encode, source: str, target: str, max_len: int = MAX_TOKENS) -> torch.Tensor:
    """[max_len, max_len] matrix M with p_target = p_source @ M (word swap)."""
    src, tgt = tokenize(encode, source, max_len), tokenize(encode, target, max_len)
    if len(src) != len(tgt):
        raise AlignmentError(
            f"swap needs the same number of words in both prompts ({len(src)} vs {len(tgt)}: "
            f"{' '.join(w for w, _, _ in src)!r} / {' '.join(w for w, _, _ in tgt)!r}); "
            f"use mode 'refine' to add or remove words.")
    m = torch.zeros(max_len, max_len)
    m[0, 0] = 1.0
    for (_, s_ids, s_pos), (_, t_ids, t_pos) in zip(src, tgt):
        if s_ids == t_ids:
            for k in range(len(s_ids)):
                m[s_pos + k, t_pos + k] = 1.0
        elif len(s_ids) == len(t_ids):
            # equal token counts: token k of the source word -> token k of the target word,
            # one to one (prompt-to-prompt's mapper), so each target token keeps its own map
            for k in range(len(s_ids)):
                m[s_pos + k, t_pos + k] = 1.0
        elif s_ids and t_ids:
            m[s_pos:s_pos + len(s_ids), t_pos:t_pos + len(t_ids)] = 1.0 / len(t_ids)

    def fill(s, t):
        m[s, t] = 1.0
    _tail(fill, _content_end(src), _content_end(tgt), max_len)
    return m


def align_words(a: Sequence, b: Sequence) -> list[tuple[int | None, int | None]]:
    """Global alignment without substitutions (LCS): pairs (i, j), (i, None) removed,
    (None, j) added, in order. Ties prefer keeping words early, deterministically."""
    n, k = len(a), len(b)
    lcs = [[0] * (k + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(k - 1, -1, -1):
            lcs[i][j] = lcs[i + 1][j + 1] + 1 if a[i] == b[j] else max(lcs[i + 1][j], lcs[i][j + 1])
    out, i, j = [], 0, 0
    while i < n or j < k:
        if i < n and j < k and a[i] == b[j]:
            out.append((i, j))
            i, j = i + 1, j + 1
        elif j < k and (i == n or lcs[i][j + 1] >= lcs[i + 1][j]):
            out.append((None, j))
            j += 1
        else:
            out.append((i, None))
            i += 1
    return out


def changed_words(source: str, target: str) -> tuple[list[str], list[str]]:
    """Words that differ between the prompts (punctuation stripped): with equal word counts the
    swapped pairs; otherwise the source words a global alignment removes and the target words it
    adds. -> (source words, target words)."""
    strip = lambda w: w.strip(",.;:!?\"'")  # noqa: E731
    a, b = [strip(w) for w in split_words(source)], [strip(w) for w in split_words(target)]
    if len(a) == len(b):
        pairs = [(x, y) for x, y in zip(a, b) if x != y]
        return [x for x, _ in pairs if x], [y for _, y in pairs if y]
    src, tgt = [], []
    for i, j in align_words(a, b):
        if j is None and a[i]:
            src.append(a[i])
        elif i is None and b[j]:
            tgt.append(b[j])
    return src, tgt


def changed_positions(encode: Encode, source: str, target: str, max_len: int = MAX_TOKENS):
    """Token positions (source set, target set) of the words that differ, each word at its own place
    only: with equal word counts the swapped pairs, otherwise the words the global word alignment
    removes / adds. A word that also occurs unchanged elsewhere is not marked there."""
    a, b = tokenize(encode, source, max_len), tokenize(encode, target, max_len)

    def span(w):
        return range(w[2], w[2] + len(w[1]))
    if len(a) == len(b):
        diff = [(x, y) for x, y in zip(a, b) if x[1] != y[1]]
        return {p for x, _ in diff for p in span(x)}, {p for _, y in diff for p in span(y)}
    pairs = align_words([w[1] for w in a], [w[1] for w in b])
    return ({p for i, j in pairs if j is None for p in span(a[i])},
            {p for i, j in pairs if i is None for p in span(b[j])})


def refine_alignment(encode: Encode, source: str, target: str, max_len: int = MAX_TOKENS):
    """(mapper [max_len] long, alphas [max_len]): target token t copies source token
    mapper[t] where alphas[t] == 1; added tokens (alpha 0) keep their own attention."""
    src, tgt = tokenize(encode, source, max_len), tokenize(encode, target, max_len)
    mapper = torch.zeros(max_len, dtype=torch.long)
    alphas = torch.zeros(max_len)
    alphas[0] = 1.0
    for i, j in align_words([ids for _, ids, _ in src], [ids for _, ids, _ in tgt]):
        if i is None or j is None:
            continue
        (_, ids, s_pos), (_, _, t_pos) = src[i], tgt[j]
        for k in range(len(ids)):
            mapper[t_pos + k] = s_pos + k
            alphas[t_pos + k] = 1.0

    def fill(s, t):
        mapper[t] = s
        alphas[t] = 1.0
    _tail(fill, _content_end(src), _content_end(tgt), max_len)
    return mapper, alphas


def equalizer(encode: Encode, text: str, words: Sequence[str], scales: Sequence[float],
              max_len: int = MAX_TOKENS) -> torch.Tensor:
    """[max_len] attention scale per token of `text`: `scales[i]` on every token of words[i]."""
    if len(words) != len(scales):
        raise AlignmentError(f"{len(scales)} scales for {len(words)} words.")
    eq = torch.ones(max_len)
    for w, s in zip(words, scales):
        idx = token_indices(encode, text, w, max_len)
        if not idx:
            raise AlignmentError(f"reweight word {w!r} is not in the prompt {text!r}.")
        eq[idx] = float(s)
    return eq


def describe(encode: Encode, source: str, target: str, mode: str, reweight_words=(),
             blend_words=(), reweight_scales=()) -> dict:
    """What the edit will do, word by word (for the editor's live preview)."""
    out = {"mode": mode, "ok": True, "error": None, "warnings": [], "source": [], "target": [],
           "pairs": []}
    try:
        src, tgt = tokenize(encode, source), tokenize(encode, target)
    except AlignmentError as e:
        out.update(ok=False, error=str(e))
        return out
    s_ops, t_ops = ["keep"] * len(src), ["keep"] * len(tgt)
    if mode == "swap" or (mode == "reweight" and len(src) == len(tgt)):
        if len(src) != len(tgt):
            out.update(ok=False, error=f"swap needs the same number of words ({len(src)} vs {len(tgt)}); "
                                       f"use mode 'refine' to add or remove words.")
        else:
            for i, (s, t) in enumerate(zip(src, tgt)):
                if s[1] != t[1]:
                    s_ops[i] = t_ops[i] = "swap"
                    out["pairs"].append({"source": s[0], "target": t[0], "op": "swap"})
                    if len(s[1]) != len(t[1]):
                        out["warnings"].append(f"'{s[0]}' has {len(s[1])} token(s), '{t[0]}' has "
                                               f"{len(t[1])}: its attention is spread over them.")
    else:
        for i, j in align_words([ids for _, ids, _ in src], [ids for _, ids, _ in tgt]):
            if i is None:
                t_ops[j] = "added"
                out["pairs"].append({"source": None, "target": tgt[j][0], "op": "added"})
            elif j is None:
                s_ops[i] = "removed"
                out["pairs"].append({"source": src[i][0], "target": None, "op": "removed"})
    scales = {}
    rw = [w for w in reweight_words if w.strip()]
    if mode == "reweight":
        if not rw:
            out.update(ok=False, error="mode 'reweight' needs reweight words (comma-separated).")
        vals = [float(v) for v in reweight_scales] or [1.0]
        vals = vals * len(rw) if len(vals) == 1 else vals
        for w, v in zip(rw, vals):
            if not token_indices(encode, target, w):
                out.update(ok=False, error=f"reweight word {w!r} is not in the target prompt.")
            scales.update({p: v for p in token_indices(encode, target, w)})
    blend = set()
    for w in blend_words:
        hit = token_indices(encode, target, w) + token_indices(encode, source, w)
        if not hit:
            out["warnings"].append(f"blend word {w!r} is in neither prompt.")
        blend |= set(token_indices(encode, target, w))
    for (w, ids, pos), op in zip(src, s_ops):
        out["source"].append({"word": w, "tokens": len(ids), "op": op})
    for (w, ids, pos), op in zip(tgt, t_ops):
        toks = set(range(pos, pos + len(ids)))
        sc = next((scales[p] for p in toks if p in scales), None)
        out["target"].append({"word": w, "tokens": len(ids), "op": op, "scale": sc,
                              "blend": bool(toks & blend)})
    return out
