"""``chunkserve bench --scenario generate`` end to end on a tiny GPT-2: the server spawned, every level measured."""

from __future__ import annotations

import re
from pathlib import Path

from service.bench.generate import bench_prompts, run_generate_scenario


def test_bench_prompts_have_exactly_the_words_asked_for() -> None:
    prompts = bench_prompts(12, 60)
    # The corpus's Chinese texts once gave 5-to-11-token prompts among the 60-token ones.
    assert len(prompts) == 12 and {len(re.findall(r"\w+", p)) for p in prompts} == {60}
    assert all(p.isascii() for p in prompts)


def test_generate_scenario_measures_the_server_and_the_paired_ttft(tiny_gpt2_dir: Path) -> None:
    report = run_generate_scenario(
        model_dir=tiny_gpt2_dir,
        levels=[1, 2],
        requests_per_level=2,
        max_tokens=3,
        prompt_words=8,
        baseline_requests=2,
        threads=1,
        vs=None,
        vs_model=None,
    )
    levels = {level["concurrency"]: level for level in report["server"]}
    assert set(levels) == {1, 2} and all(level["errors"] == 0 for level in levels.values()), report
    assert all(level["output_tokens"] >= level["requests"] for level in levels.values())
    # The server read the same prompts as the in-process baseline: the same token counts.
    assert levels[1]["prompt_tokens_mean"] == report["baseline"]["prompt_tokens_mean"] > 0
    paired = report["ttft_c1_paired"]
    assert paired["rounds"] == 2 and paired["inprocess_ttft_p50_ms"] > 0 and paired["server_ttft_p50_ms"] > 0
    assert {"ttft_p50_c1_over_inprocess", "ttft_p50_c1_paired_over_inprocess"} <= set(report["ratios"])
