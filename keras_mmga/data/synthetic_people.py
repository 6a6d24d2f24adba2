"""Synthetic people: one identity's look, one camera's view, and an image with its exact LIP parsing.

People are drawn with OpenCV: each identity has its own clothing (upper and
lower garment colours and textures, sleeve length, trousers / shorts / skirt,
hair colour, shoes, optional bag); each camera has its own background,
clutter, lighting and colour cast; every image varies the figure's position,
scale, walking pose and crop (misaligned boxes cut heads or feet), and random
occluders hide parts of the body. A LIP-label parsing map is drawn with the
same shapes, so the masks are exact. `draw_dark_person` (`dark_identity`,
`dark_camera`) draws the hard case for segmentation: dark clothes on a dark
background. Everything is determined by the
`numpy.random.RandomState` passed in; `keras_mmga.data.synthetic` writes the
dataset from these drawings (and re-exports these names).
"""

import cv2
import numpy as np

HEIGHT, WIDTH = 128, 64

# LIP labels used by the drawing.
HAIR, UPPER, PANTS, SKIRT, FACE, L_ARM, R_ARM, L_LEG, R_LEG, L_SHOE, R_SHOE = 2, 5, 9, 12, 13, 14, 15, 16, 17, 18, 19


def _colour(rng, saturated=True):
    hsv = np.uint8(
        [[[rng.randint(0, 180), rng.randint(90, 256) if saturated else rng.randint(0, 60), rng.randint(60, 256)]]]
    )
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def make_identity(rng):
    """Appearance attributes of one person."""
    return {
        "upper": _colour(rng, rng.rand() < 0.8),
        "upper2": _colour(rng, rng.rand() < 0.8),
        "texture": rng.choice(["solid", "hstripes", "vstripes", "checks"], p=[0.4, 0.25, 0.15, 0.2]),
        "stripe": int(rng.randint(3, 7)),
        "long_sleeves": rng.rand() < 0.6,
        "lower": _colour(rng, rng.rand() < 0.5),
        "lower_type": rng.choice(["trousers", "shorts", "skirt"], p=[0.6, 0.2, 0.2]),
        "hair": _colour(rng, False) if rng.rand() < 0.7 else _colour(rng),
        "long_hair": rng.rand() < 0.3,
        "skin": tuple(int(c) for c in np.array([90, 140, 200]) * rng.uniform(0.5, 1.1)),
        "shoes": _colour(rng, rng.rand() < 0.3),
        "bag": rng.choice(["none", "backpack", "shoulder"], p=[0.5, 0.25, 0.25]),
        "bag_colour": _colour(rng),
        "height": rng.uniform(0.88, 1.02),
    }


def make_camera(rng):
    """Background, clutter and lighting of one camera."""
    return {
        "top": np.array(_colour(rng, rng.rand() < 0.5), float),
        "bottom": np.array(_colour(rng, rng.rand() < 0.5), float),
        "clutter": [_colour(rng) for _ in range(4)],
        "gain": rng.uniform(0.7, 1.25),
        "tint": rng.uniform(0.85, 1.15, size=3),
        "noise": rng.uniform(2, 8),
        "blur": int(rng.choice([1, 1, 3])),
    }


def _dark(rng):
    hsv = np.uint8([[[rng.randint(0, 180), rng.randint(0, 120), rng.randint(10, 50)]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def dark_identity(person, rng):
    """`person` in dark clothes: near-black top (long sleeves) and trousers, solid, dark shoes."""
    person = dict(person)
    person.update(
        upper=_dark(rng),
        upper2=_dark(rng),
        lower=_dark(rng),
        shoes=_dark(rng),
        texture="solid",
        long_sleeves=True,
        lower_type="trousers",
        bag="none",
    )
    return person


def dark_camera(cam, rng):
    """`cam` with a dark background and clutter and a low gain (a night street, an unlit corridor)."""
    cam = dict(cam)
    cam.update(
        top=np.array(_dark(rng), float),
        bottom=np.array(_dark(rng), float),
        clutter=[_dark(rng) for _ in range(4)],
        gain=rng.uniform(0.7, 1.0),
    )
    return cam


def draw_dark_person(rng):
    """One (image, LIP label map) of a new identity in dark clothes on a dark background (`draw_person`)."""
    return draw_person(rng, dark_identity(make_identity(rng), rng), dark_camera(make_camera(rng), rng))


def _background(rng, cam):
    t = np.linspace(0, 1, HEIGHT)[:, None, None]
    img = (cam["top"] * (1 - t) + cam["bottom"] * t) * np.ones((1, WIDTH, 1))
    img = img.astype(np.uint8).copy()
    for _ in range(rng.randint(1, 5)):
        x, y = rng.randint(-10, WIDTH), rng.randint(-10, HEIGHT)
        w, h = rng.randint(5, 30), rng.randint(5, 50)
        colour = cam["clutter"][rng.randint(len(cam["clutter"]))]
        cv2.rectangle(img, (x, y), (x + w, y + h), colour, -1)
    return img


def _limb(img, lab, start, angle, length, thickness, colour, label):
    end = (int(start[0] + length * np.sin(angle)), int(start[1] + length * np.cos(angle)))
    cv2.line(img, start, end, colour, thickness)
    cv2.line(lab, start, end, label, thickness)
    return end


def _textured_torso(img, lab, pts, person):
    cv2.fillPoly(img, [pts], person["upper"])
    cv2.fillPoly(lab, [pts], UPPER)
    if person["texture"] == "solid":
        return
    region = np.zeros(img.shape[:2], np.uint8)
    cv2.fillPoly(region, [pts], 1)
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    k = person["stripe"]
    if person["texture"] == "hstripes":
        pattern = (yy // k) % 2 == 0
    elif person["texture"] == "vstripes":
        pattern = (xx // k) % 2 == 0
    else:
        pattern = ((yy // k) + (xx // k)) % 2 == 0
    img[(region == 1) & pattern] = person["upper2"]


def draw_person(rng, person, cam):
    """One (image BGR uint8, LIP label map uint8) pair of `person` seen by `cam`."""
    img = _background(rng, cam)
    lab = np.zeros((HEIGHT, WIDTH), np.uint8)
    H = 118 * person["height"] * rng.uniform(0.88, 1.08)
    cx = WIDTH / 2 + rng.uniform(-7, 7)
    top = 4 + rng.uniform(-14, 10)  # misaligned boxes: heads or feet may be cut
    phase = rng.uniform(-0.45, 0.45)  # walking pose
    side = rng.rand() < 0.5

    hip_y = top + 0.52 * H
    shoulder_y = top + 0.17 * H
    half_w = 0.15 * H * rng.uniform(0.9, 1.1) * (0.75 if side else 1.0)
    leg_t = max(3, int(0.085 * H))
    arm_t = max(2, int(0.065 * H))

    # Legs (behind the torso).
    leg_len = 0.44 * H
    for sign, leg_label, shoe_label in ((-1, L_LEG, L_SHOE), (1, R_LEG, R_SHOE)):
        hip = (int(cx + sign * 0.065 * H), int(hip_y))
        angle = sign * 0.08 + phase * (1 if sign < 0 else -1)
        if person["lower_type"] == "trousers":
            end = _limb(img, lab, hip, angle, leg_len, leg_t, person["lower"], PANTS)
        else:
            knee = _limb(img, lab, hip, angle, leg_len * 0.45, leg_t, person["lower"], PANTS)
            end = _limb(img, lab, knee, angle, leg_len * 0.55, max(2, leg_t - 1), person["skin"], leg_label)
        cv2.ellipse(img, end, (leg_t // 2 + 2, 3), 0, 0, 360, person["shoes"], -1)
        cv2.ellipse(lab, end, (leg_t // 2 + 2, 3), 0, 0, 360, shoe_label, -1)
    if person["lower_type"] == "skirt":
        skirt = np.array(
            [
                [cx - half_w * 0.8, hip_y - 2],
                [cx + half_w * 0.8, hip_y - 2],
                [cx + half_w * 1.1, hip_y + 0.2 * H],
                [cx - half_w * 1.1, hip_y + 0.2 * H],
            ],
            np.int32,
        )
        cv2.fillPoly(img, [skirt], person["lower"])
        cv2.fillPoly(lab, [skirt], SKIRT)

    # Backpack behind the torso.
    if person["bag"] == "backpack":
        bx = int(cx + (half_w if side else -half_w * 0.3))
        cv2.rectangle(img, (bx - 6, int(shoulder_y + 3)), (bx + 6, int(shoulder_y + 0.3 * H)), person["bag_colour"], -1)
        cv2.rectangle(lab, (bx - 6, int(shoulder_y + 3)), (bx + 6, int(shoulder_y + 0.3 * H)), 0, -1)

    torso = np.array(
        [
            [cx - half_w, shoulder_y],
            [cx + half_w, shoulder_y],
            [cx + half_w * 0.85, hip_y],
            [cx - half_w * 0.85, hip_y],
        ],
        np.int32,
    )
    _textured_torso(img, lab, torso, person)

    # Arms swing against the legs.
    arm_len = 0.34 * H
    for sign, arm_label in ((-1, L_ARM), (1, R_ARM)):
        shoulder = (int(cx + sign * (half_w - 1)), int(shoulder_y + 2))
        angle = sign * 0.12 - phase * (1 if sign < 0 else -1) * 0.8
        if person["long_sleeves"]:
            hand = _limb(img, lab, shoulder, angle, arm_len, arm_t, person["upper"], UPPER)
        else:
            elbow = _limb(img, lab, shoulder, angle, arm_len * 0.4, arm_t, person["upper"], UPPER)
            hand = _limb(img, lab, elbow, angle, arm_len * 0.6, max(2, arm_t - 1), person["skin"], arm_label)
        cv2.circle(img, hand, max(2, arm_t // 2), person["skin"], -1)
        cv2.circle(lab, hand, max(2, arm_t // 2), arm_label, -1)

    # Head: face, then hair on top.
    head = (int(cx + rng.uniform(-1, 1)), int(top + 0.085 * H))
    r = max(3, int(0.07 * H))
    cv2.circle(img, head, r, person["skin"], -1)
    cv2.circle(lab, head, r, FACE, -1)
    hair_extent = 200 if person["long_hair"] else 180
    cv2.ellipse(img, head, (r + 1, r + 1), 0, 180, 180 + hair_extent, person["hair"], -1)
    cv2.ellipse(lab, head, (r + 1, r + 1), 0, 180, 180 + hair_extent, HAIR, -1)
    if person["long_hair"]:
        cv2.rectangle(img, (head[0] - r - 1, head[1]), (head[0] + r + 1, head[1] + int(1.6 * r)), person["hair"], -1)
        cv2.rectangle(lab, (head[0] - r - 1, head[1]), (head[0] + r + 1, head[1] + int(1.6 * r)), HAIR, -1)

    if person["bag"] == "shoulder":
        bx = int(cx + (half_w + 2) * (1 if rng.rand() < 0.5 else -1))
        by = int(hip_y - 0.05 * H)
        cv2.rectangle(img, (bx - 5, by - 7), (bx + 5, by + 7), person["bag_colour"], -1)
        cv2.rectangle(lab, (bx - 5, by - 7), (bx + 5, by + 7), 0, -1)

    # Occluders in front of the person (a pole, a passer-by's edge, a car).
    if rng.rand() < 0.25:
        x = rng.randint(-10, WIDTH)
        y = rng.randint(HEIGHT // 3, HEIGHT)
        w, h = rng.randint(8, 28), rng.randint(15, 70)
        colour = cam["clutter"][rng.randint(len(cam["clutter"]))]
        cv2.rectangle(img, (x, y), (x + w, y + h), colour, -1)
        cv2.rectangle(lab, (x, y), (x + w, y + h), 0, -1)

    # Camera response: gain, colour cast, blur, sensor noise.
    out = img.astype(np.float32) * cam["gain"] * cam["tint"] * rng.uniform(0.9, 1.1)
    if cam["blur"] > 1:
        out = cv2.GaussianBlur(out, (cam["blur"], cam["blur"]), 0)
    out += rng.normal(0, cam["noise"], out.shape)
    return np.clip(out, 0, 255).astype(np.uint8), lab
