"""Evaluation with real bitstreams, BD-rate, the demo/train/eval/sweep/plot CLI, and
multi-process (torchrun, gloo) training."""

import json
import os
import subprocess
import sys

import pytest
import torch

from gwn_fast import recipes
from gwn_fast.cli import main
from gwn_fast.evaluate import bd_rate, evaluate
from gwn_fast.experiment import evaluate_checkpoint, run


def test_bd_rate_of_a_scaled_curve_is_the_scale():
    anchor = [(r, q) for r, q in [(1.0, 30.0), (2.0, 33.0), (4.0, 36.0), (8.0, 39.0), (16.0, 41.0)]]
    assert bd_rate(anchor, anchor) == pytest.approx(0.0, abs=1e-9)
    half = [(r / 2, q) for r, q in anchor]
    assert bd_rate(anchor, half) == pytest.approx(-50.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least 4"):
        bd_rate(anchor[:3], anchor)
    with pytest.raises(ValueError, match="positive"):
        bd_rate([(0.0, 1.0), *anchor[1:]], anchor)


def test_evaluate_reports_real_rates_next_to_the_estimate():
    torch.manual_seed(0)
    train, test = recipes.make_datasets("digits")
    codec = recipes.make_codec("digits")
    loss = recipes.make_loss("digits", beta=1.0)
    from gwn_fast.train import fit

    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(train, range(256)), batch_size=64, shuffle=True)
    fit(codec, loss, loader, epochs=2, lr=5e-3, progress=False)
    m = evaluate(codec, test, tasks=recipes.task_kinds("digits"), unit="image", limit=64)
    assert m["samples"] == 64 and m["unit"] == "image"
    assert m["max_decode_error"] == 0.0  # decoded predictions == forward's, per receiver
    for k in ("r0", "r1", "r2"):
        # real bytes = payload + fixed cost; the payload is the estimate up to coding loss.
        # fixed_overhead is exact to within about a bit per chunk (one chunk per stream
        # here), so a nearly empty channel's payload may read a fraction of a bit below 0.
        assert m[k] >= m[f"payload_{k}"] >= -1.0 / m["samples"]
        assert abs(m[f"payload_{k}"] - m[f"est_{k}"]) <= 0.02 * m[f"est_{k}"] + 8 * 4 / 64
    assert m["rate_receive"] == pytest.approx(2 * m["r0"] + m["r1"] + m["r2"])
    assert 0 <= m["acc1"] <= 1 and 0 <= m["acc2"] <= 1
    per_sample = evaluate(codec, test, tasks=recipes.task_kinds("digits"), unit="image", limit=64, single_stream=False)
    assert per_sample["overhead_bytes"] > m["overhead_bytes"]  # one stream per channel pays once
    assert per_sample["acc1"] == m["acc1"]


def test_run_writes_checkpoint_that_eval_rebuilds(tmp_path):
    result = run("digits", beta=2.0, epochs=1, batch_size=256, out_dir=tmp_path, progress=False)
    for name in ("checkpoint.pt", "metrics.jsonl", "result.json"):
        assert (tmp_path / name).exists()
    assert json.loads((tmp_path / "result.json").read_text())["beta"] == 2.0
    again = evaluate_checkpoint(tmp_path / "checkpoint.pt")
    for k in ("r0", "r1", "r2", "acc1", "acc2"):
        assert again[k] == result[k]
    assert result["mutual_information_bits"] == pytest.approx(1.3308, abs=1e-3)
    with pytest.raises(ValueError, match="epochs"):
        run("digits", epochs=0)
    with pytest.raises(ValueError, match="dataset"):
        run("mnist", epochs=1)


def test_demo_writes_summary_and_plot(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--epochs", "1", "--quiet"]) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["beta"] for s in summary] == [1.0, 2.0]
    required = {"beta", "r0", "r1", "r2", "rate_transmit", "rate_receive", "acc_digit", "acc_colour", "mutual_information_bits"}
    for s in summary:
        assert required <= set(s)
        assert s["rate_transmit"] == pytest.approx(s["r0"] + s["r1"] + s["r2"])
    assert (tmp_path / "rates.png").stat().st_size > 1000
    assert "R0" in capsys.readouterr().out


def test_sweep_and_plot_cli(tmp_path):
    out = tmp_path / "sweep"
    assert main(["sweep", "--dataset", "digits", "--betas", "1", "2", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["beta"] for r in rows] == [1.0, 2.0]
    # resumable: a second sweep loads the finished runs instead of retraining
    assert main(["sweep", "--dataset", "digits", "--betas", "1", "2", "--epochs", "1", "--out", str(out), "--quiet"]) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 2
    assert main(["plot", str(out / "results.jsonl"), "--out", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "rd.png").exists() and (tmp_path / "plots" / "r0_vs_mi.png").exists()
    assert main(["eval", str(out / "separated_beta1_alphadefault_seed0" / "checkpoint.pt")]) == 0


@pytest.mark.slow
def test_torchrun_two_cpu_processes_keep_identical_weights(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
        "-m", "gwn_fast", "train", "--dataset", "digits", "--epochs", "2", "--batch-size", "128",
        "--out", str(tmp_path), "--no-eval", "--save-rank-weights", "--quiet",
    ]
    # cwd away from the source tree, so `-m gwn_fast` imports the installed package.
    proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    w0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    w1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert w0.keys() == w1.keys()
    for k in w0:
        assert torch.equal(w0[k], w1[k]), k
    # and training moved them away from the common initialisation (run() seeds it)
    torch.manual_seed(0)
    recipes.make_datasets("digits")
    fresh = recipes.make_codec("digits").state_dict()
    assert any(not torch.equal(w0[k], fresh[k]) for k in w0 if w0[k].is_floating_point())
    assert (tmp_path / "checkpoint.pt").exists()


@pytest.mark.parametrize("dataset", ["synthetic", "stereo"])
def test_regression_recipes_train_and_decode_exactly(dataset, tmp_path):
    result = run(dataset, epochs=1, train_samples=64, batch_size=32, out_dir=tmp_path, progress=False)
    assert result["max_decode_error"] < 1e-5  # decoded predictions == forward's
    assert result["unit"] == ("position" if dataset == "synthetic" else "pixel")
    for k in ("mse1", "mse2", "psnr1", "psnr2", "r0", "r1", "r2"):
        assert result[k] >= 0
    again = evaluate_checkpoint(tmp_path / "checkpoint.pt")
    assert again["rate_transmit"] == result["rate_transmit"]


def test_warmup_start_formula_and_errors():
    from gwn_fast.experiment import warmup_start

    assert warmup_start("4beta-3", 1.0) == 1.0 and warmup_start("4beta-3", 2.0) == 5.0
    assert warmup_start("2 * beta - 1", 1.5) == 2.0 and warmup_start(3, 2.0) == 3.0
    with pytest.raises(ValueError, match="beta_warmup's start"):
        warmup_start("beta+1", 1.0)
    with pytest.raises(ValueError, match="beta_warmup's start"):
        run("digits", epochs=1, beta_warmup=("fast", 0.5), evaluate_result=False, progress=False)
