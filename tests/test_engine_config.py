"""`TrainConfig` as the one source of a run's settings: its sections are the APIs' keywords, the CLI is its fields."""

import argparse
import dataclasses
import inspect

import pytest

from keras_mmga.cli.config_flags import add_config_flags, config_kwargs
from keras_mmga.engine.config import RECIPES, SECTIONS, DemoConfig, TrainConfig
from keras_mmga.settings import COMPILE_DEFAULTS

DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}
# make_train_dataset arguments the engine sets per run, not from the configuration.
ENGINE_SET_DATA_ARGS = {
    "samples",
    "mask_root",
    "image_root",
    "mask_mode",
    "num_replicas",
    "start_batch",
    "verbose",
    # fixed by the recipe: every run augments, checks files by decoding, uses LIP's grouping
    "augment_images",
    "check_files",
    "label_groups",
}


def _keywords(function):
    return {
        name: p.default
        for name, p in inspect.signature(function).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name != "self"
    }


def _section(name):
    return {f.name for f in dataclasses.fields(TrainConfig) if name in f.metadata["to"]}


def test_compile_section_is_compile_s_recipe_keywords_with_their_defaults():
    # steps_per_epoch is the engine's (the measured epoch length), not the configured one.
    assert _section("compile") | {"steps_per_epoch"} == set(COMPILE_DEFAULTS)
    assert {k: DEFAULTS[k] for k in _section("compile")} == {k: COMPILE_DEFAULTS[k] for k in _section("compile")}


def test_model_and_data_sections_are_keywords_of_their_apis_with_the_same_defaults():
    from keras_mmga.data import make_train_dataset
    from keras_mmga.models import MMGA

    for section, function in (("model", MMGA.__init__), ("data", make_train_dataset)):
        keywords = _keywords(function)
        fields = _section(section)
        assert fields <= set(keywords), (section, fields - set(keywords))
        assert {k: DEFAULTS[k] for k in fields} == {k: keywords[k] for k in fields}, section
    # Every other make_train_dataset argument is set by the engine: a new one must be configured or listed.
    assert set(_keywords(make_train_dataset)) - _section("data") == ENGINE_SET_DATA_ARGS
    assert set(SECTIONS) == {"model", "compile", "data"}


def test_kwargs_for_gives_the_section_s_current_values():
    config = TrainConfig("d", "o", learning_rate=0.3, num_identities=6, variant="mmga", parts=("head", "legs"))
    assert config.kwargs_for("compile")["learning_rate"] == 0.3
    assert config.kwargs_for("data")["num_identities"] == 6 and config.kwargs_for("data")["parts"] == ("head", "legs")
    assert config.kwargs_for("model") == {
        "variant": "mmga",
        "parts": ("head", "legs"),
        "backbone": "resnet50",
        "backbone_weights": "imagenet",
        "sync_batchnorm": False,
    }
    with pytest.raises(ValueError, match="Unknown section 'optimizer'"):
        config.kwargs_for("optimizer")


def test_build_model_hands_every_compile_field_to_compile():
    from keras_mmga.engine.trainer import build_model

    changed = dict(
        learning_rate=0.2,
        backbone_lr_scale=0.25,
        momentum=0.8,
        weight_decay=1e-4,
        lr_decay_epochs=7,
        lr_decay_rate=0.3,
        triplet_margin=0.5,
        triplet_weight=1.5,
        attention_weight=0.2,
        part_attention_weight=0.7,
        cross_replica_triplet=False,
    )
    assert set(changed) == _section("compile") and all(changed[k] != DEFAULTS[k] for k in changed)
    config = TrainConfig("d", "o", variant="mmga", image_size=(64, 32), backbone_weights=None, **changed)
    model = build_model(config, num_classes=3, steps_per_epoch=11)
    assert {k: model.loss_config[k] for k in changed} == changed and model.loss_config["steps_per_epoch"] == 11
    assert model.variant == "mmga" and model.image_size == (64, 32) and model.backbone_weights is None


def test_every_field_is_in_the_docstring_with_its_default():
    doc = " ".join(TrainConfig.__doc__.split())
    for f in dataclasses.fields(TrainConfig):
        assert f"{f.name}: " in doc, f.name
    assert (
        "learning_rate: learning rate of the heads and attention modules. (default 0.1; goes to "
        "keras_mmga.models.MMGA.compile)" in doc
    )


def _parse(argv, exclude=(), given_only=False):
    parser = add_config_flags(argparse.ArgumentParser(), exclude=exclude)
    return config_kwargs(parser.parse_args(argv), exclude=exclude, given_only=given_only)


def test_cli_has_a_flag_per_field_and_reads_each_back():
    base = ["--data", "d", "--output", "o"]
    assert TrainConfig(**_parse(base)) == TrainConfig("d", "o")
    argv = base + [
        "--masks",
        "m",
        "--dataset",
        "dukemtmcreid",
        "--variant",
        "dmga",
        "--height",
        "128",
        "--width",
        "64",
        "-P",
        "6",
        "-K",
        "3",
        "--epochs",
        "5",
        "--epoch",
        "images",
        "--steps-per-epoch",
        "9",
        "--lr",
        "0.2",
        "--backbone-lr-scale",
        "0.25",
        "--momentum",
        "0.8",
        "--weight-decay",
        "1e-4",
        "--lr-decay-epochs",
        "3",
        "--lr-decay-rate",
        "0.1",
        "--margin",
        "0.5",
        "--triplet-weight",
        "1.5",
        "--attention-weight",
        "0.2",
        "--part-attention-weight",
        "0.7",
        "--backbone-weights",
        "None",
        "--mask-format",
        "binary",
        "--dress-group",
        "none",
        "--missing-masks",
        "ignore",
        "--no-replacement",
        "--erasing-probability",
        "0.1",
        "--cache-images",
        "--eval-every",
        "2",
        "--eval-batch-size",
        "8",
        "--save-optimizer",
        "--strategy",
        "mirrored",
        "--sync-batchnorm",
        "--per-replica-triplet",
        "--mixed-precision",
        "--seed",
        "4",
        "--deterministic",
        "--progress",
        "2",
        "--backbone",
        "resnet50_v1.5",
    ]
    got = TrainConfig(**_parse(argv))
    expected = TrainConfig(
        "d",
        "o",
        mask_root="m",
        dataset="dukemtmcreid",
        variant="dmga",
        image_size=(128, 64),
        num_identities=6,
        num_instances=3,
        epochs=5,
        epoch="images",
        steps_per_epoch=9,
        learning_rate=0.2,
        backbone_lr_scale=0.25,
        momentum=0.8,
        weight_decay=1e-4,
        lr_decay_epochs=3,
        lr_decay_rate=0.1,
        triplet_margin=0.5,
        triplet_weight=1.5,
        attention_weight=0.2,
        part_attention_weight=0.7,
        backbone="resnet50_v1.5",
        backbone_weights=None,
        mask_format="binary",
        dress_group="none",
        missing_masks="ignore",
        replacement=False,
        erasing_probability=0.1,
        cache_images=True,
        eval_every=2,
        eval_batch_size=8,
        save_optimizer=True,
        strategy="mirrored",
        sync_batchnorm=True,
        cross_replica_triplet=False,
        mixed_precision=True,
        seed=4,
        deterministic=True,
        verbose=2,
    )
    assert got == expected
    # Each field other than the device list was changed above, so each has a working flag.
    unchanged = {
        f.name
        for f in dataclasses.fields(TrainConfig)
        if getattr(got, f.name) == getattr(TrainConfig("d", "o"), f.name)
    }
    assert unchanged == {"dataset_root", "output_dir", "devices", "parts"}
    assert _parse(base + ["--parts", "head, torso"])["parts"] == ("head", "torso")


def test_recipe_sets_the_flags_not_given_and_given_flags_win():
    base = ["--data", "d", "--output", "o"]
    demo = TrainConfig(**_parse(base + ["--recipe", "demo"]))
    assert demo == TrainConfig.from_recipe("demo", "d", "o")
    assert (demo.image_size, demo.epochs, demo.epoch, demo.learning_rate) == ((64, 32), 8, "images", 0.01)
    mixed = TrainConfig(**_parse(base + ["--recipe", "demo", "--epochs", "2", "--width", "16"]))
    assert (mixed.epochs, mixed.image_size, mixed.steps_per_epoch) == (2, (64, 16), 50)
    # given_only: what the flags and the recipe set, nothing else (the callee's defaults hold).
    assert _parse(["--epochs", "3"], exclude=("dataset_root", "output_dir"), given_only=True) == {"epochs": 3}
    assert (
        _parse(["--recipe", "synthetic_ablation"], exclude=("dataset_root", "output_dir"), given_only=True)
        == RECIPES["synthetic_ablation"]
    )


def test_recipes_name_fields_and_the_demo_is_its_recipe():
    for name, fields in RECIPES.items():
        assert set(fields) <= set(DEFAULTS), name
        TrainConfig.from_recipe(name, "d", "o", variant="baseline").validate()  # each budget is a valid run
    with pytest.raises(ValueError, match="Unknown recipe 'fast'"):
        TrainConfig.from_recipe("fast", "d", "o")
    # The demo's run as run_demo wrote it out before the recipes (the published demo figures' settings).
    demo = DemoConfig(epochs=3, seed=2).train_config("images", "run", mask_root="masks")
    assert demo == TrainConfig(
        "images",
        "run",
        mask_root="masks",
        variant="mmga",
        image_size=(64, 32),
        num_identities=8,
        num_instances=4,
        epochs=3,
        epoch="images",
        steps_per_epoch=50,
        learning_rate=0.01,
        lr_decay_epochs=6,
        backbone_weights=None,
        eval_every=0,
        seed=2,
        verbose=2,
    )


def test_a_default_recipe_is_used_and_shown_when_no_recipe_is_given():
    exclude = ("dataset_root", "output_dir")
    parser = add_config_flags(
        argparse.ArgumentParser(formatter_class=argparse.ArgumentDefaultsHelpFormatter),
        exclude=exclude,
        default_recipe="synthetic_ablation",
    )
    assert config_kwargs(parser.parse_args([]), exclude, given_only=True) == RECIPES["synthetic_ablation"]
    assert config_kwargs(parser.parse_args(["--recipe", "paper"]), exclude, given_only=True) == {}
    assert TrainConfig("d", "o", **config_kwargs(parser.parse_args(["--recipe", "paper"]), exclude)) == TrainConfig(
        "d", "o"
    )
    text = " ".join(parser.format_help().split())
    assert "input height (divisible by 16) (default: 128)" in text and "total epochs. (default: 15)" in text


def test_run_ablation_checks_every_run_s_settings_before_training(tmp_path, monkeypatch):
    import keras_mmga.engine.ablation as ablation

    monkeypatch.setattr(ablation, "train", lambda config: pytest.fail("a run trained before the checks"))
    data = [ablation.AblationDataset("S", str(tmp_path), str(tmp_path))]
    with pytest.raises(ValueError, match="num_identities must be an int ≥ 1, got 0"):
        ablation.run_ablation(data, str(tmp_path / "out"), variants=["baseline", "mmga"], num_identities=0)
