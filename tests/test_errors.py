"""Bad input gives one line naming the problem, a non-zero exit, no traceback, and no metrics.json."""

import pytest

from conftest import run_cli
from seqlab.errors import SeqlabError

CASES = {
    "unknown group option": (["model=transformerr"], "Available options in 'model'"),
    "unknown key": (["trainer.max_epoch=3"], "trainer.max_epoch"),
    "wrong type": (["trainer.max_epochs=three"], "trainer.max_epochs='three' has the wrong type"),
    "missing checkpoint": (["ckpt_path=/no/such.ckpt"], "checkpoint /no/such.ckpt does not exist"),
    "missing last checkpoint": (["ckpt_path=last"], "does not exist (ckpt_path=last resumes"),
    "optimized metric not produced": (["optimized_metric=val/bleu", "debug=fdr"], "optimized_metric='val/bleu' was not produced"),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_bad_input_is_one_clear_line(tmp_path, case):
    overrides, message = CASES[case]
    run_dir = tmp_path / "run"
    result = run_cli("seqlab-train", *overrides, f"hydra.run.dir={run_dir}", "data.train_size=200", cwd=tmp_path)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (run_dir / "metrics.json").exists()


def test_eval_without_checkpoint_says_what_to_pass(tmp_path):
    result = run_cli("seqlab-eval", f"hydra.run.dir={tmp_path / 'eval'}", cwd=tmp_path)
    assert result.returncode != 0
    assert "ckpt_path" in result.stderr and "Traceback" not in result.stderr


def test_full_traceback_on_request(tmp_path):
    result = run_cli("seqlab-train", "ckpt_path=/no/such.ckpt", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert result.returncode != 0 and "Traceback" in result.stderr


def test_null_unsets_a_setting_whose_default_has_a_type(compose_config, in_hydra):
    """`trainer.val_check_interval=null` (Lightning's "once per epoch") passes the type check of a preset
    that sets an integer; `data.batch_size=null` is still refused in one line."""
    from seqlab.cli.config_checks import check_override_types

    in_hydra(check_override_types, compose_config(["experiment=shakespeare_gpt", "trainer.val_check_interval=null"]))
    with pytest.raises(SeqlabError, match=r"^data.batch_size=null: .*data.batch_size=<a positive integer>$"):
        in_hydra(check_override_types, compose_config(["data.batch_size=null"]))
