"""Image → LIP body-part label map, from a pose model's segmentation and landmarks.

The segmentation gives the body; the landmarks give the parts. Each body
pixel goes to the nearest limb of the skeleton (capsules around the bones:
head, torso, upper arm / forearm / hand, thigh, shin, foot), so a hand
hanging beside the hip stays with its arm. Torso and thighs are then split
at the **waistline**, found where the clothes change colour in the rows
around the hips (the hip landmarks sit at the joints, below the waistband);
when no clear change is found the line falls back to a fixed fraction of the
torso above the hip joints. The waistline is a row: made for upright people
(pedestrian crops).

Parts are written as LIP label ids, so `keras_mmga.data.masks` reads them with
`mask_format="lip"` and its default grouping (whole / upper / bottom); the ids
name body regions (what a finer grouping needs), not garments:

| part | LIP id | group |
|---|---|---|
| head above the eyes / below | 2 hair / 13 face | upper |
| torso (above the waistline) | 5 upper-clothes | upper |
| left / right arm with hand | 14 / 15 | upper |
| thighs (below the waistline, to the knees) | 9 pants | bottom |
| left / right shin | 16 / 17 | bottom |
| left / right foot | 18 / 19 | bottom |

("left" is the person's left, as in the landmarks.)

Example:
```python
parser = BodyPartParser()  # doctest: +SKIP
result = parser.parse(cv2.imread("0002_c1s1_000451_03.jpg"))  # doctest: +SKIP
result.label_map.shape, result.person, round(result.confidence, 2)  # doctest: +SKIP
```
"""

import collections

import cv2
import numpy as np

HAIR, UPPER_CLOTHES, PANTS, FACE = 2, 5, 9, 13
LEFT_ARM, RIGHT_ARM, LEFT_LEG, RIGHT_LEG, LEFT_SHOE, RIGHT_SHOE = 14, 15, 16, 17, 18, 19
PART_LABELS = (HAIR, UPPER_CLOTHES, PANTS, FACE, LEFT_ARM, RIGHT_ARM, LEFT_LEG, RIGHT_LEG, LEFT_SHOE, RIGHT_SHOE)

# BlazePose landmark indices.
NOSE, L_EYE, R_EYE, L_EAR, R_EAR = 0, 2, 5, 7, 8
L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW, L_WRIST, R_WRIST = 11, 12, 13, 14, 15, 16
L_HAND, R_HAND = (17, 19, 21), (18, 20, 22)
L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 23, 24, 25, 26, 27, 28
L_HEEL, R_HEEL, L_TOE, R_TOE = 29, 30, 31, 32

# Internal part codes (index into _PART_TO_LIP); torso and thighs are split later.
_HEAD, _TORSO, _L_ARM, _R_ARM, _THIGH, _L_SHIN, _R_SHIN, _L_FOOT, _R_FOOT = range(9)
_PART_TO_LIP = np.array(
    [FACE, UPPER_CLOTHES, LEFT_ARM, RIGHT_ARM, PANTS, LEFT_LEG, RIGHT_LEG, LEFT_SHOE, RIGHT_SHOE], np.uint8
)

ParseResult = collections.namedtuple(
    "ParseResult", "label_map confidence person presence waist_y absent", defaults=((),)
)
ParseResult.__doc__ = """One parsed image.

label_map: (H, W) uint8 LIP ids (all 0 when no person); confidence: in [0, 1]
(presence × mean visibility of shoulders and hips); person: whether a person
was found; presence: the model's pose presence; waist_y: the waistline row
(None without a person); absent: the LIP ids of the parts not in view (their
landmarks outside the crop or below `min_seen`), sorted: they got no pixels
and their channels get weight 0 in training (`keras_mmga.data.masks`)."""

# LIP ids of each part, by the landmarks that must be seen for it to be drawn.
PART_NAMES = {
    HAIR: "hair",
    UPPER_CLOTHES: "upper_clothes",
    PANTS: "pants",
    FACE: "face",
    LEFT_ARM: "left_arm",
    RIGHT_ARM: "right_arm",
    LEFT_LEG: "left_leg",
    RIGHT_LEG: "right_leg",
    LEFT_SHOE: "left_shoe",
    RIGHT_SHOE: "right_shoe",
}


# A whole leg in view reaches at least this many torso lengths below its hip (hip to ankle is ~1.5
# torso lengths standing; the pose model's guesses squeezed into a waist-up crop mostly stay below 1).
MIN_LEG_DROP = 1.0
# A colour region counts as the same clothing as another when at least this share of its pixels wears
# the other's common colours (see `_shared_colours`).
SAME_CLOTHING = 0.5
# Two garments wear, on average over both directions, less than this share of each other's colours: arms
# held in front of a shirt add their colours below a row, but the shirt's colours go on below it.
BOTH_WAYS = 0.625
# The share of the head's disk (inside the frame) that must be body.
HEAD_FILL = 0.7
# Body over a head (hair, a hat) reaches at most this many head radii above its top.
HEAD_OVER = 1.0
# A head narrower than this share of the chest's width is a head whatever its colours.
HEAD_TO_CHEST = 0.7
# How far below the hips (torso lengths) a change of clothing is sought when none is near them.
LOW_WAIST = 1.5
# A whole leg in view reaches this many trunk widths (the body's widest run along the trunk, shoulders to hips)
# below the shoulders (about 2.4 standing, facing the camera); the pose model's guesses squeezed into a
# waist-up crop reach ~1.
LEG_TO_TRUNK = 1.3
# A waistline lies at least this many trunk widths below the shoulders (about 1 standing, facing the camera).
WAIST_TO_TRUNK = 0.4
# A whole leg in view ends in a foot: a heel or toe seen, or the ankle this many torso lengths above the
# bottom edge (the pose model squeezes the legs of a waist-up crop down to the edge, feet outside).
FOOT_ROOM = 0.15
# How many of the strongest colour changes near the hips are tried as the waistline.
WAIST_CANDIDATES = 6


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


def frame_for_model(image_bgr, margin=1.4, size=256):
    """The model's input: the crop centred on a square `margin`× its longer side, edges replicated.

    BlazePose's landmark model expects the person with room around it (its own
    pipeline enlarges the detector's box by 1.25); re-ID crops are tight.
    Returns `(input (size, size, 3) float32 RGB in [0, 1], (scale, off_x, off_y))`
    where image coordinates = model coordinates / scale − offset.
    """
    h, w = image_bgr.shape[:2]
    side = int(round(max(h, w) * margin))
    oy, ox = (side - h) // 2, (side - w) // 2
    padded = cv2.copyMakeBorder(image_bgr, oy, side - h - oy, ox, side - w - ox, cv2.BORDER_REPLICATE)
    rgb = cv2.cvtColor(cv2.resize(padded, (size, size), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
    return rgb.astype(np.float32) * (1.0 / 255.0), (size / side, ox, oy)


def _shared_colours(reference, pixels, step=16.0, min_share=0.02):
    """Share of `pixels` (Lab, (n, 3)) whose colour is common in `reference`: within one `step` bin of a bin
    holding >= `min_share` of the reference pixels."""
    size = int(np.ceil(256 / step))
    ref_bins = np.clip((reference / step).astype(int), 0, size - 1)
    counts = np.zeros((size,) * 3)
    np.add.at(counts, tuple(ref_bins.T), 1)
    common = counts >= max(2.0, min_share * len(reference))
    grown = common.copy()
    for axis in range(3):  # one bin of tolerance each way along each axis (noise, shading), no wrap-around
        lo, hi = [slice(None)] * 3, [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        grown[tuple(lo)] |= common[tuple(hi)]
        grown[tuple(hi)] |= common[tuple(lo)]
    bins = np.clip((pixels / step).astype(int), 0, size - 1)
    return float(grown[tuple(bins.T)].mean())


def _run_extent(mask, point):
    """`(left, right)` columns of the run of `mask` pixels through `point` (x, y) along its row; None outside
    the mask."""
    h, w = mask.shape
    x, y = int(round(point[0])), int(round(point[1]))
    if not (0 <= y < h and 0 <= x < w) or not mask[y, x]:
        return None
    row = mask[y]
    left = x - (np.flatnonzero(~row[: x + 1][::-1])[:1].tolist() or [x + 1])[0] + 1
    right = x + (np.flatnonzero(~row[x:])[:1].tolist() or [w - x])[0] - 1
    return left, right


def _run_width(mask, point):
    """Width of the run of `mask` pixels through `point` (x, y) along its row; 0 outside the mask."""
    extent = _run_extent(mask, point)
    return 0 if extent is None else extent[1] - extent[0] + 1


def _trunk_width(mask, top, bottom, samples=16):
    """Widest run of `mask` through the line from `top` to `bottom` (x, y), sampled at `samples` points."""
    return max(_run_width(mask, top + t * (bottom - top)) for t in np.linspace(0.0, 1.0, samples))


def _closer_to(pixels, first, second, limit=400):
    """Share of `pixels` (Lab, (n, 3)) whose nearest colour in `first` is nearer than their nearest in `second`
    (each set thinned to about `limit` colours, evenly)."""
    pixels, first, second = (x[:: max(1, len(x) // limit)] for x in (pixels, first, second))

    def nearest(ref):  # squared distance to the nearest colour of `ref`, |p|^2 + |r|^2 - 2 p.r as one product
        return ((ref * ref).sum(axis=1)[None, :] - 2.0 * pixels @ ref.T).min(axis=1)

    return float((nearest(first) < nearest(second)).mean())


def _nearest_capsule(px, py, capsules):
    """Part code of the capsule `(code, a, b, radius)` nearest to each point (distance to the bone − radius)."""
    a = np.array([c[1] for c in capsules], np.float32)
    ab = np.array([c[2] for c in capsules], np.float32) - a
    radius = np.array([c[3] for c in capsules], np.float32)[:, None]
    dx = px.astype(np.float32)[None, :] - a[:, :1]
    dy = py.astype(np.float32)[None, :] - a[:, 1:]
    denom = np.maximum((ab * ab).sum(axis=1, keepdims=True), 1e-6)
    t = np.clip((dx * ab[:, :1] + dy * ab[:, 1:]) / denom, 0.0, 1.0)
    dist = np.sqrt((dx - t * ab[:, :1]) ** 2 + (dy - t * ab[:, 1:]) ** 2) - radius
    return np.array([c[0] for c in capsules])[np.argmin(dist, axis=0)]


class BodyPartParser:
    """Parses person crops into LIP label maps with BlazePose GHUM full.

    Args:
        pose_model: a `PoseModel`, a path to the model file, or None (the cache).
        num_threads: interpreter threads when the model is opened here.
        margin: the model sees the crop inside a square this many times its
            longer side (1.25–1.5 scored best on the synthetic set, seed 0; 1.0,
            a tight crop, is worse on every group; 2.0 too small a person).
        body_threshold: segmentation probability above which a pixel is body.
        skeleton_threshold: the lower probability that counts as body near
            the skeleton (inside the seen limbs' capsules): dark clothes on a
            dark background get low segmentation scores inside the person.
            The skeleton's core (the torso between the seen shoulders and
            hips, and the seen bones at half their radius) is body whatever
            the segmentation says. 0 turns both off.
        presence_threshold: pose presence below which no person is reported.
        min_body_fraction: a person must cover at least this fraction of the image.
        waist_search: (above, below) extent of the waistline search, as
            fractions of the torso length around the hip joints.
        waist_fallback: the waistline without a clear colour change, as a
            fraction of the torso length above the hip joints.
        min_colour_change: the colour change (mean Lab distance) that counts as clear.
        cache_dir: see `keras_mmga.masks.pose_model.default_cache_dir`.
        min_seen: a landmark counts as seen when it lies inside the crop and
            both its visibility and presence (sigmoid of the model's logits)
            reach this. A bone is drawn only when both its ends are seen (a
            foot: its ankle, heel or toe), the head when a face landmark is:
            a waist-up crop gets no thighs, shins or feet, and these parts are
            reported absent (`ParseResult.absent`).
        min_leg_seen: the bar for a whole leg in view (knee and ankle inside
            the crop, both scoring this, the ankle a torso length below the
            hip and 1.3 trunk widths below the shoulders, and a heel or toe
            scoring this or the ankle clear of the bottom edge). Legs,
            trousers and shoes need pixel evidence besides their landmarks,
            because the pose model fits a whole body into a crop cut at the
            waist, squeezed: its torso and legs get shorter, the body's width
            in the pixels does not. The evidence: a whole leg seen, or a
            clear change of clothing at the waistline (the trunk's mean
            colour half a torso length above and below differs, most colours
            below are not worn above, so a striped top does not count, and
            the colours above do not go on below, so arms held in front of
            a shirt do not count), 0.4 trunk widths below the shoulders at
            least, with a third of a torso length of it in the frame (sought
            down to 1.5 torso lengths below the hips when none is near them).
            The head likewise must be body where the model puts it with no
            body over it, and be narrower than the chest or wear colours the
            chest does not (a crop cut below the chin gets face landmarks on
            the collar), and what lies beside it within the chest's width
            must not be the chest's clothing (the segmentation rounds a crop
            cut below the shoulders into a head).

    `parse(image_bgr)` returns a `ParseResult`; `parse_outputs(...)` does the
    same from model outputs already in image coordinates (for tests and tools).
    """

    def __init__(
        self,
        pose_model=None,
        num_threads=1,
        margin=1.4,
        body_threshold=0.5,
        presence_threshold=0.25,
        min_body_fraction=0.02,
        waist_search=(0.35, 0.3),
        waist_fallback=0.1,
        min_colour_change=12.0,
        cache_dir=None,
        min_seen=0.7,
        skeleton_threshold=0.1,
        min_leg_seen=0.4,
    ):
        from keras_mmga.masks.pose_model import PoseModel

        if not 1.0 <= float(margin) <= 3.0:
            raise ValueError(f"margin must be in [1, 3], got {margin}.")
        if not 0.0 < float(body_threshold) < 1.0:
            raise ValueError(f"body_threshold must be in (0, 1), got {body_threshold}.")
        self.model = (
            pose_model
            if isinstance(pose_model, PoseModel)
            else PoseModel(pose_model, num_threads=num_threads, cache_dir=cache_dir)
        )
        self.margin = float(margin)
        self.body_threshold = float(body_threshold)
        self.presence_threshold = float(presence_threshold)
        self.min_body_fraction = float(min_body_fraction)
        self.waist_search = tuple(float(v) for v in waist_search)
        self.waist_fallback = float(waist_fallback)
        self.min_colour_change = float(min_colour_change)
        if not 0.0 <= float(min_seen) < 1.0:
            raise ValueError(f"min_seen must be in [0, 1), got {min_seen}.")
        self.min_seen = float(min_seen)
        if not 0.0 <= float(skeleton_threshold) <= float(body_threshold):
            raise ValueError(f"skeleton_threshold must be in [0, body_threshold], got {skeleton_threshold}.")
        self.skeleton_threshold = float(skeleton_threshold)
        if not 0.0 <= float(min_leg_seen) < 1.0:
            raise ValueError(f"min_leg_seen must be in [0, 1), got {min_leg_seen}.")
        self.min_leg_seen = float(min_leg_seen)

    def run_model(self, image_bgr):
        """Model outputs in image coordinates: `(landmarks (39, 5), presence, segmentation logits (H, W))`."""
        h, w = image_bgr.shape[:2]
        x, (scale, ox, oy) = frame_for_model(image_bgr, self.margin)
        out = self.model.run(x)
        landmarks = out["landmarks"].copy()
        landmarks[:, 0] = landmarks[:, 0] / scale - ox
        landmarks[:, 1] = landmarks[:, 1] / scale - oy
        # The image's window of the 256-px logits, resized to the image.
        x0, y0 = ox * scale, oy * scale
        m = np.float32([[1 / scale, 0, -x0 / scale], [0, 1 / scale, -y0 / scale]])
        seg = cv2.warpAffine(out["segmentation"], m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return landmarks, out["presence"], seg

    def parse(self, image_bgr):
        """The `ParseResult` of one BGR uint8 person crop."""
        image_bgr = np.asarray(image_bgr)
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
            raise ValueError(f"Expected an (H, W, 3) uint8 BGR image, got {image_bgr.shape} {image_bgr.dtype}.")
        landmarks, presence, seg = self.run_model(image_bgr)
        return self.parse_outputs(image_bgr, landmarks, presence, seg)

    def parse_outputs(self, image_bgr, landmarks, presence, seg_logits):
        """Label map from model outputs in image coordinates (see `run_model`)."""
        h, w = image_bgr.shape[:2]
        empty = np.zeros((h, w), np.uint8)
        body = seg_logits > np.log(self.body_threshold / (1.0 - self.body_threshold))
        # A crop cut by the frame lowers the pose presence (a waist-up crop
        # often scores < 0.1) while the trunk's landmarks stay sure: both
        # shoulders seen count as a person too.
        seen = self.seen_landmarks(landmarks, h, w)
        if (presence < self.presence_threshold and not seen[[L_SHOULDER, R_SHOULDER]].all()) or (
            body.mean() < self.min_body_fraction
        ):
            return ParseResult(empty, float(presence), False, float(presence), None)
        pts = landmarks[:, :2].astype(np.float64)
        visibility = _sigmoid(landmarks[[L_SHOULDER, R_SHOULDER, L_HIP, R_HIP], 3])
        confidence = float(presence * visibility.mean())
        # One Lab copy for the colour tests (waistline, head).
        lab = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2LAB)
        inside = (pts[:, 0] >= 0) & (pts[:, 0] <= w - 1) & (pts[:, 1] >= 0) & (pts[:, 1] <= h - 1)
        mid_shoulder = (pts[L_SHOULDER] + pts[R_SHOULDER]) / 2
        mid_hip = (pts[L_HIP] + pts[R_HIP]) / 2
        torso_len = max(np.linalg.norm(mid_hip - mid_shoulder), 0.1 * h)
        head = pts[:11].mean(axis=0)
        r_head = max(np.linalg.norm(pts[L_EAR] - pts[R_EAR]) * 0.75, 0.22 * torso_len)
        r_torso = max(
            0.5 * np.linalg.norm(pts[L_SHOULDER] - pts[R_SHOULDER]),
            0.5 * np.linalg.norm(pts[L_HIP] - pts[R_HIP]),
            0.2 * torso_len,
        )
        r_arm, r_leg = 0.1 * torso_len, 0.13 * torso_len
        # The torso stays (it takes every body pixel no seen limb is nearer
        # to, e.g. a jacket below the frame's hips); other parts need their
        # landmarks in view: a part without them is absent, not guessed.
        capsules = [(_TORSO, mid_shoulder, mid_hip, r_torso)]
        # The head: its face landmarks seen, and the head itself in the frame
        # (a crop cut below the chin still gets face landmarks at its top edge).
        face_seen = int(seen[[NOSE, L_EYE, R_EYE, L_EAR, R_EAR]].sum())
        if (
            face_seen >= 3
            and pts[NOSE, 1] - 0.5 * r_head >= 0
            and pts[:11, 1].min() - 0.5 * r_head >= 0
            and self._head_in_view(lab, body, head, r_head, mid_shoulder, mid_hip)
        ):
            capsules.append((_HEAD, head, head, r_head))
        for code, shoulder, elbow, wrist, hand in (
            (_L_ARM, L_SHOULDER, L_ELBOW, L_WRIST, L_HAND),
            (_R_ARM, R_SHOULDER, R_ELBOW, R_WRIST, R_HAND),
        ):
            if seen[shoulder] and seen[elbow]:
                capsules.append((code, pts[shoulder], pts[elbow], r_arm))
            if seen[elbow] and seen[wrist]:
                capsules.append((code, pts[elbow], pts[wrist], r_arm))
                capsules.append((code, pts[wrist], pts[list(hand)].mean(axis=0), r_arm))

        def reaches(start, end, room):
            # A bone from a seen joint: its far joint seen, or below the frame
            # with `room` rows of the bone in view; a far joint "seen" too
            # close to its start (a squeezed guess) does not count.
            length = np.linalg.norm(pts[end] - pts[start])
            if seen[end] and length >= 0.35 * torso_len:
                return True
            return pts[end, 1] > h - 1 and pts[start, 1] + room < h

        upper_body = len(capsules)
        # A whole leg in view: knee and ankle inside the crop with visibility and presence >= min_leg_seen,
        # the ankle a torso length below the hip and LEG_TO_TRUNK trunk widths below the shoulders (the
        # body's width is pixels, which a squeezed pose cannot shrink), and a foot seen or room for one
        # above the bottom edge.
        leg_score = np.minimum(_sigmoid(landmarks[:, 3]), _sigmoid(landmarks[:, 4])) * inside
        trunk_w = _trunk_width(body, mid_shoulder, mid_hip)
        legs_seen = any(
            min(leg_score[k], leg_score[a]) >= self.min_leg_seen
            and pts[a, 1] - pts[hip, 1] >= MIN_LEG_DROP * torso_len
            and pts[a, 1] - mid_shoulder[1] >= LEG_TO_TRUNK * trunk_w
            and (
                max(leg_score[heel], leg_score[toe]) >= self.min_leg_seen or pts[a, 1] <= h - 1 - FOOT_ROOM * torso_len
            )
            for hip, k, a, heel, toe in (
                (L_HIP, L_KNEE, L_ANKLE, L_HEEL, L_TOE),
                (R_HIP, R_KNEE, R_ANKLE, R_HEEL, R_TOE),
            )
        )
        for thigh_hip, knee, ankle, heel, toe, shin, foot in (
            (L_HIP, L_KNEE, L_ANKLE, L_HEEL, L_TOE, _L_SHIN, _L_FOOT),
            (R_HIP, R_KNEE, R_ANKLE, R_HEEL, R_TOE, _R_SHIN, _R_FOOT),
        ):
            if seen[thigh_hip] and (reaches(thigh_hip, knee, 0.2 * torso_len) or inside[knee]):
                capsules.append((_THIGH, pts[thigh_hip], pts[knee], r_leg))
            if seen[knee] and reaches(knee, ankle, 0.2 * torso_len):
                capsules.append((shin, pts[knee], pts[ankle], r_leg))
            if seen[ankle] and (seen[heel] or seen[toe]):
                capsules += [(foot, pts[heel], pts[toe], r_leg * 0.8), (foot, pts[ankle], pts[toe], r_leg * 0.8)]
        segmented = body

        def assign(capsules):
            filled = (
                self._fill_skeleton(segmented, seg_logits, capsules, pts, seen)
                if self.skeleton_threshold > 0
                else segmented
            )
            ys, xs = np.nonzero(filled)
            px, py = xs.astype(np.float64), ys.astype(np.float64)
            return filled, ys, xs, px, py, _nearest_capsule(px, py, capsules)

        body, ys, xs, px, py, codes = assign(capsules)
        # A pose squeezed into a waist-up crop can put its hips at the shoulders: a colour change above
        # this row is inside the top, not a waistline.
        waist_floor = mid_shoulder[1] + WAIST_TO_TRUNK * trunk_w
        waist_y, clear = self._waistline(lab, body, codes, px, py, mid_hip, torso_len)
        clear = clear and waist_y >= waist_floor
        if not clear and not legs_seen:
            # A long coat or a squeezed pose puts the change of clothing far below the model's hips.
            low_y, low_clear = self._waistline(lab, body, codes, px, py, mid_hip, torso_len, below=LOW_WAIST)
            if low_clear and low_y >= waist_floor:
                waist_y, clear = low_y, True
        if not (clear or legs_seen) and len(capsules) > upper_body:
            # Legs need evidence in the pixels too: the pose model fits a whole body into a waist-up
            # crop (hips and knees inside it, seen), but a crop that holds the bottom shows either the
            # colour change at the waist with clothing below it, or a whole leg, knee to ankle.
            capsules = capsules[:upper_body]
            body, ys, xs, px, py, codes = assign(capsules)
        drawn = {c[0] for c in capsules}
        if _THIGH in drawn:
            trunk = (codes == _TORSO) | (codes == _THIGH)
            codes[trunk & (py < waist_y)] = _TORSO
            codes[trunk & (py >= waist_y)] = _THIGH
        labels = _PART_TO_LIP[codes]
        # Hair: the head above the eyes.
        eye_y = (pts[L_EYE, 1] + pts[R_EYE, 1]) / 2
        labels[(codes == _HEAD) & (py < eye_y)] = HAIR
        label_map = empty
        label_map[ys, xs] = labels
        absent = sorted(int(_PART_TO_LIP[code]) for code in set(range(len(_PART_TO_LIP))) - drawn)
        if _HEAD not in drawn:
            absent = sorted(absent + [HAIR])
        return ParseResult(label_map, confidence, True, float(presence), float(waist_y), tuple(absent))

    def _fill_skeleton(self, body, seg_logits, capsules, pts, seen):
        """`body` with the skeleton's core and the weakly segmented pixels near the seen bones added."""
        h, w = body.shape
        gy, gx = np.mgrid[0:h, 0:w]
        gx, gy = gx.ravel().astype(np.float32), gy.ravel().astype(np.float32)
        near = np.zeros(h * w, bool)
        core = np.zeros(h * w, bool)
        for code, a, b, radius in capsules:
            if code == _TORSO:
                continue  # its core is the quad below; its capsule is wider than a side view
            a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
            ab = b - a
            t = np.clip(((gx - a[0]) * ab[0] + (gy - a[1]) * ab[1]) / max(float(ab @ ab), 1e-6), 0.0, 1.0)
            dist = np.hypot(gx - a[0] - t * ab[0], gy - a[1] - t * ab[1])
            near |= dist <= radius
            core |= dist <= 0.5 * radius
        weak = seg_logits.ravel() > np.log(self.skeleton_threshold / (1.0 - self.skeleton_threshold))
        filled = body.ravel() | (weak & near) | core
        filled = filled.reshape(h, w)
        # The torso between the shoulders and the hips, where both are seen
        # (narrowed: a person seen from the side is thinner than the shoulder line).
        if seen[L_SHOULDER] and seen[R_SHOULDER] and seen[L_HIP] and seen[R_HIP]:
            quad = pts[[L_SHOULDER, R_SHOULDER, R_HIP, L_HIP]]
            centre = quad.mean(axis=0)
            quad = centre + 0.8 * (quad - centre)
            torso = np.zeros((h, w), np.uint8)
            cv2.fillPoly(torso, [np.round(quad).astype(np.int32)], 1)
            filled |= torso.astype(bool)
        return filled

    def _head_in_view(self, lab, body, head, r_head, mid_shoulder, mid_hip):
        """Whether the head the pose model placed is a head: body with nothing over it, no chest clothing beside
        it, and narrower than the chest or not wearing its clothing.

        The pose model fits a head into a crop cut below the chin, on the collar: there the body is as
        wide as the chest and wears the chest's colours. A real head is narrower than the shoulders, or
        shows colours (face, hair) the clothing below the shoulders does not wear.
        """
        h, w = body.shape
        gy, gx = np.mgrid[0:h, 0:w]
        # A head is body where the model put it (the disk inside the frame mostly body) with no body over it
        # (at most HEAD_OVER head radii of rows above its top in its middle columns: hair, a hat), else the model
        # put it on the torso or the background.
        disk = np.hypot(gx - head[0], gy - head[1]) <= r_head
        if (body & disk).sum() < HEAD_FILL * disk.sum():
            return False
        x0, x1 = int(max(0, head[0] - 0.5 * r_head)), int(min(w, head[0] + 0.5 * r_head + 1))
        top = int(max(0, head[1] - 1.2 * r_head))
        if body[:top, x0:x1].sum() > max(x1 - x0, 1) * HEAD_OVER * r_head:
            return False
        chest = mid_shoulder + 0.35 * (mid_hip - mid_shoulder)
        in_chest = body & (np.hypot(gx - chest[0], gy - chest[1]) <= 0.25 * np.linalg.norm(mid_hip - mid_shoulder))
        chest_lab = lab[in_chest].astype(np.float64)
        extent = _run_extent(body, chest)
        if extent is not None and len(chest_lab) >= 10:
            # Beside a head, within the chest's width, is background; the segmentation model also rounds a
            # crop cut below the shoulders into a head, but there the pixels beside it wear the chest's clothing.
            near = cv2.dilate(body.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
            beside = np.zeros_like(body)
            beside[
                int(max(0, head[1] - r_head)) : int(min(h, np.ceil(head[1] + 0.5 * r_head))), extent[0] : extent[1] + 1
            ] = True
            beside &= ~near
            # The background's colours from outside the chest's width (a cut shirt may lie above the head too).
            far = ~cv2.dilate(body.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
            far[:, extent[0] : extent[1] + 1] = False
            if beside.sum() >= 10 and far.sum() >= 10:
                # Worn by the chest, and nearer in colour to the chest than to the background for most pixels
                # (a background may wear the shirt's colours too, among many others).
                pixels = lab[beside].astype(np.float64)
                if (
                    _shared_colours(chest_lab, pixels) >= SAME_CLOTHING
                    and _closer_to(pixels, chest_lab, lab[far].astype(np.float64)) >= 0.5
                ):
                    return False
        head_w, chest_w = _run_width(body, head), 0 if extent is None else extent[1] - extent[0] + 1
        if head_w < HEAD_TO_CHEST * chest_w or head_w == 0:
            return True
        in_head = body & (np.hypot(gx - head[0], gy - head[1]) <= 0.6 * r_head)
        if in_head.sum() < 10 or len(chest_lab) < 10:
            return True
        return _shared_colours(chest_lab, lab[in_head].astype(np.float64)) < SAME_CLOTHING

    def seen_landmarks(self, landmarks, h, w):
        """(39,) bool: landmarks inside the (h, w) crop with visibility and presence >= `min_seen`."""
        x, y = landmarks[:, 0], landmarks[:, 1]
        inside = (x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)
        confident = (_sigmoid(landmarks[:, 3]) >= self.min_seen) & (_sigmoid(landmarks[:, 4]) >= self.min_seen)
        return inside & confident

    def _waistline(self, lab, body, codes, px, py, mid_hip, torso_len, below=None):
        """`(row, clear)`: where the trunk's colour changes most near the hips (fallback above the hip joints), and
        whether that is a change of clothing. `lab`: the image in Lab; `below`: the search's extent under the hips
        in torso lengths (default `waist_search[1]`)."""
        fallback = mid_hip[1] - self.waist_fallback * torso_len
        above = self.waist_search[0]
        below = self.waist_search[1] if below is None else below
        y0 = int(max(0, np.floor(mid_hip[1] - above * torso_len)))
        y1 = int(min(body.shape[0], np.ceil(mid_hip[1] + below * torso_len)))
        if y1 - y0 < 6:
            return fallback, False
        # Mean Lab colour per row over trunk pixels (arms excluded: a hanging
        # sleeve would blur the change).
        trunk = (codes == _TORSO) | (codes == _THIGH)
        sel = trunk & (py >= y0) & (py < y1)
        if sel.sum() < 10:
            return fallback, False
        rows = py[sel].astype(int)
        colours = lab[rows, px[sel].astype(int)].astype(np.float64)
        rows -= y0
        n = y1 - y0
        count = np.bincount(rows, minlength=n).astype(np.float64)
        sums = np.stack([np.bincount(rows, colours[:, c], minlength=n) for c in range(3)], axis=1)
        band = max(2, int(round(0.08 * torso_len)))
        # Mean colour of the `band` rows above each candidate row and of the
        # `band` rows from it on (cumulative sums; row y splits [y-band, y) | [y, y+band)).
        c_count = np.concatenate([[0.0], np.cumsum(count)])
        c_sums = np.concatenate([np.zeros((1, 3)), np.cumsum(sums, axis=0)])
        y = np.arange(band, n - band + 1)
        up_n, dn_n = c_count[y] - c_count[y - band], c_count[y + band] - c_count[y]
        up = (c_sums[y] - c_sums[y - band]) / np.maximum(up_n, 1)[:, None]
        dn = (c_sums[y + band] - c_sums[y]) / np.maximum(dn_n, 1)[:, None]
        change = np.where((up_n >= band) & (dn_n >= band), np.linalg.norm(up - dn, axis=1), 0.0)
        if not change.size or change.max() < self.min_colour_change:
            return fallback, False
        best_y = int(y[np.argmax(change)]) + y0
        # The waistline is a change of clothing, not of a pattern: the strongest changes in turn, the
        # first whose trunk colours half a torso length above and below differ on average (a striped
        # top changes at every stripe but not on average) and mostly are not worn above (a pattern's
        # colours are) nor, on average both ways, wear the colours above (arms over a shirt), with a
        # third of a torso length of the trunk in the frame below it.
        wide = max(band, int(round(0.5 * torso_len)))
        checked = []
        for k in np.argsort(-change, kind="stable")[:WAIST_CANDIDATES]:
            cy = int(y[k]) + y0
            if change[k] < self.min_colour_change:
                break
            if any(abs(cy - c) < band for c in checked):
                continue
            checked.append(cy)
            over = trunk & (py >= cy - wide) & (py < cy)
            under = trunk & (py >= cy) & (py < cy + wide)
            if np.unique(py[under]).size < 0.3 * torso_len or over.sum() < 10:
                continue
            up = lab[py[over].astype(int), px[over].astype(int)].astype(np.float64)
            dn = lab[py[under].astype(int), px[under].astype(int)].astype(np.float64)
            if np.linalg.norm(up.mean(axis=0) - dn.mean(axis=0)) >= self.min_colour_change:
                worn_above = _shared_colours(up, dn)
                if worn_above < SAME_CLOTHING and worn_above + _shared_colours(dn, up) < 2 * BOTH_WAYS:
                    return float(cy), True
        return float(best_y), False
