"""The training data of a run: the PK stream of `make_train_dataset` for a `TrainConfig`, and its checks."""

from keras_mmga.data import PKSampler, make_train_dataset
from keras_mmga.models import VARIANTS
from keras_mmga.settings import DEFAULT_PARTS


def steps_per_epoch(config, samples, num_replicas):
    """Optimizer steps in one epoch: `config.steps_per_epoch`, or one epoch of the PK sampler.

    Needed before the dataset is made, which starts at the resumed batch.
    """
    if config.steps_per_epoch:
        return int(config.steps_per_epoch)
    sampler = PKSampler(
        [pid for _, pid, _ in samples],
        config.num_identities,
        config.num_instances,
        num_replicas,
        config.replacement,
        config.seed,
        epoch=config.epoch,
    )
    return sampler.steps_per_epoch


def check_batches(element_spec, variant, image_size, batch_size, parts=None):
    """Shapes of the training batches against what `variant` at `image_size` (with `parts`) consumes.

    Read from the dataset's element spec, so it runs before the model is built
    (a ResNet50 takes seconds to build; a wrong mask size should not).
    """
    images, targets = element_spec
    height, width = (int(s) for s in image_size)
    expected_images = (batch_size, height, width, 3)
    if tuple(images.shape) != expected_images:
        raise ValueError(f"Training images have shape {tuple(images.shape)}; the model expects {expected_images}.")
    if VARIANTS[variant]["supervised"]:
        h, w = height // 16, width // 16
        if "masks" not in targets:
            raise ValueError(f"Variant {variant!r} is trained with body masks, but the training batches have none.")
        masks = tuple(targets["masks"].shape)
        # Channel 0 is the whole body, then one channel per part group (mmga),
        # or the two halves (dmga, and mmga's default parts; wmga uses channel 0).
        groups = ("whole",) + (tuple(parts) if parts is not None else DEFAULT_PARTS)
        if masks != (batch_size, h, w, len(groups)):
            raise ValueError(
                f"Training masks have shape {masks}; variant {variant!r} at input "
                f"{(height, width)} needs ({batch_size}, {h}, {w}, {len(groups)}) (input/16, "
                f"{'/'.join(groups)})."
            )


def make_data(config, data, num_replicas, start_batch=0):
    """The training `TrainData` of `config` for the dataset reader `data`.

    Masks mirror the folder that holds `bounding_box_train/`: the reader's
    resolved `root`, which is below `config.dataset_root` when that is a
    folder holding e.g. `Market-1501-v15.09.15/`.
    """
    spec = VARIANTS[config.variant]
    return make_train_dataset(
        data.train,
        mask_root=config.mask_root if spec["supervised"] else None,
        image_root=getattr(data, "root", config.dataset_root),
        mask_mode=spec["mask_mode"],
        num_replicas=num_replicas,
        start_batch=start_batch,
        verbose=config.verbose > 0,
        **config.kwargs_for("data"),
    )
