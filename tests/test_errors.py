"""A full traceback on request, and settings set to null. Each mistake's one line (no traceback, no
metrics.json) is checked by the catalogue in test_one_line_errors.py."""

import pytest

from conftest import run_cli
from seqlab.errors import SeqlabError


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
