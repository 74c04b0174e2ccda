"""The README's results summary is computed from bench/results/ (vp2p_dev.results_summary): the
README must hold exactly what the files give, and a changed file must change it."""
import json
import os
import re
import shutil

from vp2p_dev import results_summary as rs


def test_readme_results_match_the_result_files():
    assert not rs.stale(), "out of date: python -m vp2p_dev.results_summary --write"


def test_a_changed_result_file_changes_the_summary(tmp_path):
    results = tmp_path / "results"
    shutil.copytree(rs.RESULTS, results)
    path = results / "quality_v3.json"
    data = json.loads(path.read_text())
    data["summary"][rs.DEFAULT]["bg_psnr"][0] += 1.0
    path.write_text(json.dumps(data))
    assert rs.render(str(results)) != rs.render()
    mem = results / "memory.txt"
    mem.write_text(re.sub(r"(\| tune step \| 8 \| on \| )[\d.]+", r"\g<1>42.42", mem.read_text()))
    assert "| 42.4 |" in rs.render(str(results)) and "| 42.4 |" not in rs.render()


def test_pipeline_peak_takes_the_default_settings():
    peak = {("tune step", 8, "on"): 3.0, ("tune step", 8, "off"): 9.0, ("sampler step", 8, "-"): 4.0,
            ("sampler step (frame control)", 8, "-"): 7.0, ("inflated UNet weights", 0, "-"): 1.7}
    assert rs.pipeline_peak(peak, 8) == 4.0      # not checkpointing off, not the optional frame control
