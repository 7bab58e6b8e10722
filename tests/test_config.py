from __future__ import annotations

from pathlib import Path

import pytest

from jobs.config import load_config, parse_override
from tracking.config import ConfigError, PipelineConfig


@pytest.mark.parametrize("override, culprit", [
    ("detector.imgsz=100", "detector.imgsz"),
    ("detector.conf=1.5", "detector.conf"),
    ("detector.device='tpu'", "detector.device"),
    ("detector.batch_size=0", "detector.batch_size"),
    ("tracker.max_age=0", "tracker.max_age"),
    ("tracker.max_cosine_distance=-1", "tracker.max_cosine_distance"),
    ("tracker.nn_budget=0", "tracker.nn_budget"),
    ("tracker.n_init='three'", "tracker.n_init"),
    ("output.video_crf=99", "output.video_crf"),
    ("output.annotated_video=3", "output.annotated_video"),
    ("embedder.crop_size=[8, 8]", "embedder.crop_size"),
    ("tracker.nonsense=1", "tracker.nonsense"),
    ("nosection.key=1", "nosection"),
])
def test_bad_values_name_the_key(override: str, culprit: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert culprit in str(e.value)


@pytest.mark.parametrize("item, expected", [
    ("tracker.max_age=60", ("tracker", "max_age", 60)),
    ("detector.conf=0.4", ("detector", "conf", 0.4)),
    ("output.annotated_video=false", ("output", "annotated_video", False)),
    ("detector.classes=['person', 2]", ("detector", "classes", ["person", 2])),
    ("detector.model=/models/yolov8n.pt", ("detector", "model", "/models/yolov8n.pt")),
    ("detector.model=s3://bucket/m.pt", ("detector", "model", "s3://bucket/m.pt")),
])
def test_parse_override(item: str, expected: tuple[str, str, object]) -> None:
    assert parse_override(item) == expected


@pytest.mark.parametrize("item", ["max_age=3", "tracker.max_age", ".x=1", "tracker.=1"])
def test_malformed_override(item: str) -> None:
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_override(item)


def test_toml_then_overrides(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text('[tracker]\nmax_age = 45\nn_init = 2\n[detector]\nclasses = ["person"]\n')
    cfg = load_config(f, ["tracker.max_age=60"])
    assert cfg.tracker.max_age == 60 and cfg.tracker.n_init == 2
    assert cfg.detector.classes == ("person",)
    with pytest.raises(AttributeError):
        cfg.tracker.max_age = 1  # type: ignore[misc]


def test_missing_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[tracker\nmax_age=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_params_id_identity() -> None:
    base = PipelineConfig()
    assert base.params_id("a" * 64, "r" * 64) == PipelineConfig().params_id("a" * 64, "r" * 64)
    assert len(base.params_id("a" * 64, "r" * 64)) == 12
    # results-changing parameters and the model bytes change it...
    assert load_config(None, ["tracker.max_age=31"]).params_id("a" * 64, "r" * 64) != base.params_id("a" * 64, "r" * 64)
    assert base.params_id("b" * 64, "r" * 64) != base.params_id("a" * 64, "r" * 64)
    # ...execution knobs and where the model lives do not (its bytes identify it)
    assert load_config(None, ["detector.model=s3://b/m.pt"]).params_id("a" * 64, "r" * 64) == \
        load_config(None, ["detector.model=/local/m.pt"]).params_id("a" * 64, "r" * 64)
    assert load_config(None, ["detector.batch_size=2", "detector.device='cpu'", "embedder.batch_size=8"]
                       ).params_id("a" * 64, "r" * 64) == base.params_id("a" * 64, "r" * 64)


def test_int8_identities_name_the_quantisation_recipe() -> None:
    """A new int8 recipe gives other results, so datasets made with it get other ids; fp32's ids
    (precision at its default) do not change with it."""
    from tracking.config import INT8_RECIPE, DetectorConfig, EmbedderConfig, PipelineConfig

    fp32 = PipelineConfig()
    int8 = PipelineConfig(detector=DetectorConfig(precision="int8"), embedder=EmbedderConfig(precision="int8"))
    assert "precision" not in fp32.canonical()["detector"]
    assert int8.canonical()["detector"]["precision"] == int8.canonical()["embedder"]["precision"] == \
        f"int8-r{INT8_RECIPE}"
    assert int8.params_id("m" * 64, "r" * 64) != fp32.params_id("m" * 64, "r" * 64)
