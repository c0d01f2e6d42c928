"""Precision changes the numbers: fp32 and bf16 runs are different experiments (FIDELITY row 16)."""

from medref_cli.config import config_hash, load_config


def test_fp32_and_bf16_have_different_config_hashes():
    fp32, bf16 = load_config(), load_config(sets=["runtime.amp=true"])
    assert not fp32.runtime.amp  # the reference and the paper train in fp32
    assert config_hash(fp32) != config_hash(bf16)


def test_other_runtime_settings_stay_out_of_the_hash():
    a = load_config()
    b = load_config(sets=["runtime.device=cpu", "runtime.results_dir=elsewhere", "runtime.log_every=3"])
    assert config_hash(a) == config_hash(b)
