"""The benchmark corpus: a built-in, seeded set of mixed-length English and Chinese texts, or the caller's own file."""

from __future__ import annotations

import json
import random
from pathlib import Path

_WORDS = """
the of and to in is that for it as with was on be by this are from at or an have not they which one you
had all were their has but when there can more been if will would about so what up out into time some
only other than then its also two over new most after first model server request latency batch token
text chunk embedding vector search query document result network memory device queue worker thread
system data value number people water year work world government company market research study report
service process information program question problem point state group country school city river
mountain forest weather summer winter morning evening history science language music between through
during without within under before against among because although however therefore quickly slowly
carefully rarely often usually always never sometimes certainly probably clearly measure build run
serve test train evaluate deploy scale split merge compute return answer improve
""".split()
_PUNCT = [".", ".", ".", "?", "!", ";", ","]
_ZH_WORDS = """
我们 服务器 模型 请求 延迟 批量 文本 向量 搜索 查询 文档 结果 网络 内存 设备 队列 线程 系统 数据 时间 今天 天气
历史 科学 语言 音乐 城市 河流 山区 森林 研究 报告 问题 学校 国家 公司 市场 因为 但是 所以 然后 已经 可以 非常
重要 快速 测试 部署 处理 长文本 分块 计算 结果 用户 需要 使用 返回 开始 结束 方法 工作 世界 人们 发展 技术
""".split()
_ZH_PUNCT = ["。", "。", "。", "？", "！", "；", "，"]
ZH_EVERY = 5  # every fifth built-in text is Chinese


def _chinese(rng: random.Random, words: int) -> str:
    out: list[str] = []
    sentence_left = rng.randint(6, 20)
    for i in range(words):
        out.append(rng.choice(_ZH_WORDS))
        sentence_left -= 1
        if sentence_left <= 0 or i == words - 1:
            out.append(rng.choice(_ZH_PUNCT) if i < words - 1 else "。")
            sentence_left = rng.randint(6, 20)
    return "".join(out)


def builtin_corpus(n: int = 2000, seed: int = 1234, min_words: int = 20, max_words: int = 250) -> list[str]:
    """``n`` deterministic texts of ``min_words``..``max_words`` words in sentences, every ``ZH_EVERY``-th Chinese."""
    rng = random.Random(seed)
    texts = []
    for k in range(n):
        words = rng.randint(min_words, max_words)
        if k % ZH_EVERY == ZH_EVERY - 1:
            texts.append(_chinese(rng, words))
            continue
        out: list[str] = []
        sentence_left = rng.randint(6, 20)
        for i in range(words):
            word = rng.choice(_WORDS)
            out.append(word.capitalize() if sentence_left == 0 or i == 0 else word)
            sentence_left -= 1
            if sentence_left <= 0 or i == words - 1:
                out[-1] += rng.choice(_PUNCT) if i < words - 1 else "."
                sentence_left = rng.randint(6, 20)
        texts.append(" ".join(out))
    return texts


def load_corpus(path: Path | None, n: int, field: str = "text") -> list[str]:
    """Texts from ``path`` (.jsonl: ``field`` of each line; other files: one text per non-empty line).

    Raises:
        ValueError: the file holds no texts.
    """
    if path is None:
        return builtin_corpus(n)
    texts: list[str] = []
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            texts.append(str(json.loads(line)[field]) if path.suffix == ".jsonl" else line)
            if len(texts) >= n:
                break
    if not texts:
        raise ValueError(f"{path} holds no texts")
    return texts
