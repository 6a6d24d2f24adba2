"""Reading `.keras` / `.weights.h5` files saved before MMGA's backbone / task split.

Keras stores weights by attribute path. Before the split the ResNet stages,
the attention units and the embedding heads were attributes of `MMGA`
itself (`layers/functional`, `layers/mask_guided_attention`, `heads/...`);
now they belong to `MMGA.backbone` (`backbone/layers/functional`, ...). The
classifiers (`layers/dense*`) and the optimizer's variables (`optimizer/vars`,
in the same order: backbone variables first, then the classifiers) did not
move. So an old file is the new layout with the `backbone/` prefix removed;
`redirect_backbone_paths` makes the weights store read it that way.
"""

_PREFIX = "backbone/"


def is_pre_split(h5_file):
    """True for a weights file written by `MMGA` before the split (no `backbone` group)."""
    return "backbone" not in h5_file and "layers" in h5_file and "functional" in h5_file["layers"]


def redirect_backbone_paths(store):
    """Makes a Keras H5 weights store read `backbone/<path>` from `<path>` in a pre-split file.

    Called by `MMGA.load_own_variables` with the store Keras loads the whole
    model from (its root entry is the store itself); a no-op for other
    stores and for files of the current layout.
    """
    h5_file = getattr(store, "h5_file", None)
    get = getattr(store, "get", None)
    if h5_file is None or get is None or getattr(get, "_mmga_redirect", False):
        return
    try:
        if not is_pre_split(h5_file):
            return
    except TypeError:  # not an h5py file
        return

    def redirected_get(path):
        if path.startswith(_PREFIX):
            path = path[len(_PREFIX):]
        return get(path)

    redirected_get._mmga_redirect = True
    store.get = redirected_get
