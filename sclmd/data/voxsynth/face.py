"""Cartoon colour portraits of a VoxSynth speaker.

Identity (face shape, colours, hair, beard, glasses, signs of age) comes from the
speaker's attributes only; pose, lighting, background, clothes and expression
come from `rng`, so two images of one speaker differ the way two photos do.

Everything is drawn at `size * supersample` pixels and downsampled, which is the
cheapest way to get anti-aliased shapes out of PIL.ImageDraw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from sclmd.data.voxsynth.attributes import MAX_AGE, MIN_AGE, SpeakerAttributes

Colour = tuple[int, int, int]
Point = tuple[float, float]

# Skin from light to dark, interpolated by skin_tone.
_SKIN_STOPS = np.array(
    [
        (255, 226, 204),
        (240, 199, 166),
        (214, 164, 126),
        (170, 116, 82),
        (121, 79, 54),
        (82, 54, 38),
    ],
    dtype=float,
)
_HAIR: dict[str, Colour] = {
    "black": (28, 24, 24),
    "dark_brown": (62, 40, 28),
    "brown": (104, 68, 42),
    "light_brown": (150, 110, 70),
    "blonde": (222, 188, 118),
    "red": (172, 72, 32),
    "auburn": (122, 48, 34),
}
_IRIS: dict[str, Colour] = {
    "dark_brown": (58, 34, 20),
    "brown": (102, 62, 30),
    "hazel": (128, 108, 58),
    "green": (78, 128, 78),
    "blue": (70, 122, 190),
    "grey": (128, 138, 150),
}
_GREY_HAIR: Colour = (214, 212, 206)
_LAYER_MARGIN = 1.7  # the scene is drawn on a larger canvas so no pose shows its edge
# How far hair stands off the skull, by style (canvas units).
_HAIR_VOLUME = {
    "crew": 0.012,
    "short": 0.025,
    "side_part": 0.03,
    "curly": 0.05,
    "bob": 0.04,
    "long": 0.04,
    "bun": 0.02,
}
_BACKGROUND_SIDE = 16
_BACK_HAIR_STYLES = {"long", "bob", "bun", "curly"}


@dataclass(frozen=True)
class Motion:
    """What moves in one frame of a talking face: the mouth, the eyelids and the head.

    Yaw and pitch are drawn as a 2.5-D turn (eyes, nose and mouth slide across the head
    outline); roll rotates the whole figure about the head centre.
    """

    opening: float = 0.0  # jaw drop: 0 closed .. 1 wide open
    rounding: float = 0.0  # lip rounding: 0 spread .. 1 rounded (the corners come in)
    blink: float = 0.0  # 0 eyes open .. 1 closed
    yaw: float = 0.0  # degrees, + turns towards the image's right
    pitch: float = 0.0  # degrees, + nods down
    roll: float = 0.0  # degrees, added to the portrait's own tilt


STILL = Motion()


def _mix(a: Colour | np.ndarray, b: Colour | np.ndarray, t: float) -> Colour:
    a_arr, b_arr = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return tuple(int(round(v)) for v in a_arr + (b_arr - a_arr) * t)  # type: ignore[return-value]


def _shade(colour: Colour, factor: float) -> Colour:
    return tuple(min(255, max(0, round(c * factor))) for c in colour)  # type: ignore[return-value]


@dataclass(frozen=True)
class _Look:
    """Per-speaker appearance in canvas units (1.0 = image side)."""

    male: bool
    old: float  # 0 at MIN_AGE .. 1 at MAX_AGE
    skin: Colour
    hair: Colour
    iris: Colour
    half_width: float
    half_height: float
    jaw_exponent: float  # superellipse exponent of the lower face: higher = squarer jaw
    chin_taper: float  # how much the lower face narrows towards the chin
    recession: float  # 0 full hairline .. 1 bald on top
    attrs: SpeakerAttributes

    @classmethod
    def of(cls, attrs: SpeakerAttributes) -> _Look:
        male = attrs.gender == "m"
        old = (attrs.age - MIN_AGE) / (MAX_AGE - MIN_AGE)
        position = attrs.skin_tone * (len(_SKIN_STOPS) - 1)
        low = min(int(position), len(_SKIN_STOPS) - 2)
        skin = _mix(_SKIN_STOPS[low], _SKIN_STOPS[low + 1], position - low)
        # Older skin is a little less saturated.
        skin = _mix(skin, (int(np.mean(skin)),) * 3, 0.25 * old)
        greyness = float(np.clip((attrs.age - attrs.greying_age) / 30.0, 0.0, 0.85))
        return cls(
            male=male,
            old=old,
            skin=skin,
            hair=_mix(_HAIR[attrs.hair_colour], _GREY_HAIR, greyness),
            iris=_IRIS[attrs.eye_colour],
            half_width=0.17 * (1.0 + 0.07 * male + 0.045 * attrs.size),
            half_height=0.225 * (1.0 + 0.04 * male + 0.03 * attrs.size),
            jaw_exponent=(2.7 if male else 2.0) + 0.15 * attrs.size,
            chin_taper=0.1 if male else 0.24,
            recession=attrs.hair_loss * float(np.clip((attrs.age - 25) / 40.0, 0.0, 1.0)),
            attrs=attrs,
        )


class _Painter:
    """Draws one figure over a background; coordinates in canvas units, head-centred."""

    def __init__(self, look: _Look, side: int, background: Image.Image):
        self.look = look
        self.scale = side
        self.layer_side = int(round(side * _LAYER_MARGIN))
        self.layer = background.resize((self.layer_side, self.layer_side), Image.Resampling.BILINEAR)
        self.draw = ImageDraw.Draw(self.layer, "RGBA")  # "RGBA" on an RGB image blends translucent strokes
        self.cx = 0.5 * _LAYER_MARGIN
        self.cy = 0.5 * _LAYER_MARGIN - 0.04
        self.head_centre = (self.cx, self.cy)

    def turned(self, motion: Motion) -> None:
        """Eyes, nose and mouth drawn from here on slide as the head turns (yaw) and nods (pitch)."""
        look = self.look
        self.cx = self.head_centre[0] + 0.8 * look.half_width * np.sin(np.deg2rad(motion.yaw))
        self.cy = self.head_centre[1] + 0.5 * look.half_height * np.sin(np.deg2rad(motion.pitch))

    def px(self, x: float, y: float) -> Point:
        """Canvas units relative to the head centre -> layer pixels."""
        return ((self.cx + x) * self.scale, (self.cy + y) * self.scale)

    def box(self, x: float, y: float, rx: float, ry: float) -> list[float]:
        (x0, y0), (x1, y1) = self.px(x - rx, y - ry), self.px(x + rx, y + ry)
        return [x0, y0, x1, y1]

    def width(self, units: float) -> int:
        return max(1, int(round(units * self.scale)))

    # --- shapes -------------------------------------------------------------

    def face_outline(self, grow: float = 0.0, n: int = 72) -> list[Point]:
        """Superellipse skull on top, squarer or pointier jaw below."""
        look = self.look
        t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
        c, s = np.cos(t), np.sin(t)
        lower = s > 0
        exponent = np.where(lower, look.jaw_exponent, 2.2)
        x = np.sign(c) * np.abs(c) ** (2.0 / exponent) * (look.half_width + grow)
        y = np.sign(s) * np.abs(s) ** (2.0 / exponent) * (look.half_height + grow)
        x = np.where(lower, x * (1.0 - look.chin_taper * s**2), x)
        return [self.px(xi, yi) for xi, yi in zip(x, y, strict=True)]

    def hairline(self, u: np.ndarray) -> np.ndarray:
        """Height of the hairline (canvas units, negative = up) across the forehead, u in -1..1."""
        look = self.look
        style = look.attrs.hair_style
        h = look.half_height
        centre = 0.55 + 0.35 * look.recession
        side = 0.12 + 0.55 * look.recession
        if style in {"bob", "long"} and look.recession < 0.2:
            centre = 0.38  # a fringe hides part of the forehead
        y = -h * (centre + (side - centre) * np.abs(u) ** 3)
        # Temples recede first: the "M" of male-pattern hair loss.
        y -= h * 0.25 * look.recession * np.exp(-(((np.abs(u) - 0.6) / 0.2) ** 2))
        if style == "side_part":
            y -= h * 0.06 * (u + 1.0)
        return y

    def hair_cap(self, volume: float) -> list[Point]:
        look = self.look
        t = np.linspace(np.pi, 2.0 * np.pi, 40)
        outer = [
            self.px(
                np.cos(ti) * (look.half_width + volume),
                np.sin(ti) * (look.half_height + 1.3 * volume) + 0.01,
            )
            for ti in t
        ]
        u = np.linspace(1.0, -1.0, 30)
        inner_y = self.hairline(u)
        inner = [self.px(ui * (look.half_width + 0.2 * volume), yi) for ui, yi in zip(u, inner_y, strict=True)]
        return outer + inner

    # --- parts, back to front ------------------------------------------------

    def body(self, shirt: Colour) -> None:
        look = self.look
        shoulders = 0.36 * (1.0 + 0.12 * look.male + 0.05 * look.attrs.size)
        neck = look.half_width * (0.72 if look.male else 0.55)
        self.draw.rectangle(self.box(0.0, 0.55 * look.half_height + 0.12, neck, 0.14), fill=_shade(look.skin, 0.88))
        self.draw.ellipse(self.box(0.0, look.half_height + 0.27, shoulders, 0.2), fill=shirt)
        # Neckline: skin showing above the shirt.
        self.draw.ellipse(self.box(0.0, look.half_height + 0.08, neck * 0.9, 0.045), fill=_shade(look.skin, 0.88))

    def back_hair(self) -> None:
        look = self.look
        style = look.attrs.hair_style
        w, h = look.half_width, look.half_height
        if look.recession > 0.75 or style not in _BACK_HAIR_STYLES:
            return
        if style == "long":
            self.draw.rounded_rectangle(
                self.box(0.0, 0.05 * h + 0.12, w * 1.3, h * 1.05 + 0.1),
                radius=self.width(w),
                fill=look.hair,
            )
        elif style == "bob":
            self.draw.ellipse(self.box(0.0, 0.05 * h, w * 1.3, h * 1.1), fill=look.hair)
        elif style == "bun":
            self.draw.ellipse(self.box(0.0, -h * 1.12, w * 0.42, w * 0.38), fill=look.hair)
        else:  # curly: a halo of curls
            for angle in np.linspace(np.pi * 0.85, np.pi * 2.15, 16):
                x, y = np.cos(angle) * w * 1.12, np.sin(angle) * h * 1.02
                self.draw.ellipse(self.box(x, y, w * 0.3, w * 0.3), fill=look.hair)

    def head(self) -> None:
        look = self.look
        skin = look.skin
        for side in (-1, 1):
            ear = (side * look.half_width * 0.98, 0.02)
            self.draw.ellipse(self.box(*ear, 0.03, 0.055), fill=_shade(skin, 0.95))
            self.draw.arc(
                self.box(*ear, 0.016, 0.032),
                0,
                360,
                fill=_shade(skin, 0.75),
                width=self.width(0.005),
            )
        self.draw.polygon(self.face_outline(), fill=skin)

    def eyes(self, gaze: Point, blink: float = 0.0) -> None:
        look = self.look
        attrs = look.attrs
        w, h = look.half_width, look.half_height
        eye_y = -0.05 * h
        spacing = w * (0.42 + 0.035 * attrs.eye_spacing)
        eye_rx, eye_ry = 0.2 * w, (0.085 if look.male else 0.1) * w
        line = _shade(look.skin, 0.45)
        brow_colour = _shade(look.hair, 0.8)
        brow_width = self.width((0.022 if look.male else 0.012) * (1.0 + 0.2 * attrs.size * look.male))
        for side in (-1, 1):
            x = side * spacing
            self.draw.ellipse(self.box(x, eye_y, eye_rx, eye_ry), fill=(246, 244, 240))
            iris_x, iris_y = x + gaze[0] * eye_rx * 0.35, eye_y + gaze[1] * eye_ry * 0.2
            iris_r = eye_ry * 0.95
            self.draw.ellipse(self.box(iris_x, iris_y, iris_r, iris_r), fill=look.iris)
            self.draw.ellipse(self.box(iris_x, iris_y, iris_r * 0.45, iris_r * 0.45), fill=(15, 12, 12))
            self.draw.ellipse(
                self.box(iris_x - iris_r * 0.3, iris_y - iris_r * 0.3, iris_r * 0.18, iris_r * 0.18),
                fill=(255, 255, 255),
            )
            if blink > 0.0:  # the lid comes down over the eye: skin above its edge, lashes on it
                lid_y = eye_y - 2.0 * eye_ry * (1.0 - blink)
                self.draw.ellipse(self.box(x, lid_y, eye_rx * 1.08, eye_ry * 1.2), fill=look.skin)
                self.draw.arc(
                    self.box(x, lid_y, eye_rx, eye_ry * 1.2),
                    10,
                    170,
                    fill=(30, 22, 20),
                    width=self.width(0.006 if look.male else 0.01),
                )
            # Upper lid, heavier (lashes) for women.
            self.draw.arc(
                self.box(x, eye_y, eye_rx, eye_ry),
                190,
                350,
                fill=(30, 22, 20),
                width=self.width(0.006 if look.male else 0.01),
            )
            brow_y = eye_y - eye_ry - (0.05 if look.male else 0.065) * h
            arch = 0.008 if look.male else 0.022
            inner, outer = x - side * eye_rx * 0.9, x + side * eye_rx * 1.15
            self.draw.line(
                [
                    self.px(inner, brow_y + 0.004),
                    self.px(x, brow_y - arch),
                    self.px(outer, brow_y + 0.01),
                ],
                fill=brow_colour,
                width=brow_width,
                joint="curve",
            )
            if look.old > 0.35:  # bags under the eyes
                self.draw.arc(
                    self.box(x, eye_y + eye_ry * 0.9, eye_rx * 0.8, eye_ry * 0.7),
                    20,
                    160,
                    fill=line + (int(160 * look.old),),
                    width=self.width(0.004),
                )
            if look.old > 0.45:  # crow's feet
                corner = x + side * eye_rx * 1.15
                for k in (-1, 0, 1):
                    self.draw.line(
                        [
                            self.px(corner, eye_y + k * 0.01),
                            self.px(corner + side * 0.025, eye_y + k * 0.02),
                        ],
                        fill=line + (int(190 * look.old),),
                        width=self.width(0.003),
                    )

    def nose_and_mouth(self, smile: float, opening: float = 0.0, rounding: float = 0.0) -> None:
        look = self.look
        attrs = look.attrs
        w, h = look.half_width, look.half_height
        line = _shade(look.skin, 0.62)
        nose_len = 0.34 * h * (1.0 + 0.08 * attrs.nose_size)
        nose_w = 0.16 * w * (1.0 + 0.1 * attrs.nose_size) * (1.12 if look.male else 1.0)
        tip_y = -0.05 * h + nose_len
        self.draw.line(
            [self.px(0.01, -0.02 * h), self.px(0.02, tip_y - 0.02), self.px(0.0, tip_y)],
            fill=line + (150,),
            width=self.width(0.005),
        )
        self.draw.arc(self.box(0.0, tip_y - 0.008, nose_w, 0.018), 10, 170, fill=line, width=self.width(0.006))

        mouth_y = tip_y + 0.3 * h * (1.0 - tip_y / h * 0.3)
        half = w * (0.36 + 0.035 * attrs.mouth_width)
        lip = _mix(
            look.skin,
            (186, 62, 74) if not look.male else (150, 78, 72),
            0.45 if not look.male else 0.3,
        )
        u = np.linspace(-1.0, 1.0, 21)
        lift = smile * 0.02 * u**2  # corners rise when smiling
        upper = [self.px(ui * half, mouth_y - 0.013 * (1 - ui**2) - li) for ui, li in zip(u, lift, strict=True)]
        lower = [
            self.px(ui * half, mouth_y + 0.02 * (1 - ui**2) * (1 + 0.5 * smile) - li)
            for ui, li in zip(u[::-1], lift[::-1], strict=True)
        ]
        if opening > 0.0 or rounding > 0.0:
            self.open_mouth(mouth_y, half, lip, lift, smile, opening, rounding)
        else:
            self.draw.polygon(upper + lower, fill=lip)
            self.draw.line(
                [self.px(ui * half, mouth_y - li) for ui, li in zip(u, lift, strict=True)],
                fill=_shade(lip, 0.55),
                width=self.width(0.004),
            )
        if look.old > 0.35:  # nasolabial folds
            for side in (-1, 1):
                self.draw.line(
                    [
                        self.px(side * nose_w * 1.1, tip_y - 0.01),
                        self.px(side * half * 1.15, mouth_y + 0.01),
                    ],
                    fill=line + (int(200 * look.old),),
                    width=self.width(0.004),
                )
        if not look.male:
            for side in (-1, 1):  # a hint of blush
                self.draw.ellipse(self.box(side * w * 0.55, tip_y, w * 0.16, w * 0.1), fill=(220, 90, 90, 28))

    def open_mouth(
        self,
        mouth_y: float,
        half: float,
        lip: Colour,
        lift: np.ndarray,
        smile: float,
        opening: float,
        rounding: float,
    ) -> None:
        """Lips parted by the jaw (`opening`) and drawn in at the corners (`rounding`)."""
        u = np.linspace(-1.0, 1.0, 21)
        half = half * (1.0 - 0.4 * rounding)
        gap = 0.06 * opening  # canvas units between the lips at the centre
        bulge = 1.0 - u**2
        lift = lift * (1.0 - rounding)
        upper_top = [
            self.px(ui * half, mouth_y - (0.013 + 0.006 * rounding) * b - li - 0.25 * gap * b)
            for ui, b, li in zip(u, bulge, lift, strict=True)
        ]
        upper_edge = [
            self.px(ui * half, mouth_y - li - 0.25 * gap * b**0.5)
            for ui, b, li in zip(u[::-1], bulge[::-1], lift[::-1], strict=True)
        ]
        lower_edge = [
            self.px(ui * half, mouth_y - li + 0.75 * gap * b**0.5) for ui, b, li in zip(u, bulge, lift, strict=True)
        ]
        lower_bottom = [
            self.px(ui * half, mouth_y + 0.75 * gap * b**0.5 + 0.02 * b * (1 + 0.5 * smile) - li)
            for ui, b, li in zip(u[::-1], bulge[::-1], lift[::-1], strict=True)
        ]
        if gap > 0.0:
            self.draw.polygon(upper_edge[::-1] + lower_edge[::-1], fill=(58, 18, 24))  # the mouth cavity
            if opening > 0.3:  # upper teeth show once the jaw is well down
                teeth = [
                    self.px(ui * half * 0.7, mouth_y - 0.25 * gap * b**0.5 + 0.12 * gap)
                    for ui, b in zip(u, bulge, strict=True)
                ]
                self.draw.line(teeth, fill=(236, 232, 222), width=self.width(0.1 * gap + 0.003))
        self.draw.polygon(upper_top + upper_edge, fill=lip)
        self.draw.polygon(lower_edge + lower_bottom, fill=lip)
        self.draw.line(upper_edge, fill=_shade(lip, 0.55), width=self.width(0.004))

    def forehead_lines(self) -> None:
        look = self.look
        n_lines = int(np.clip((look.attrs.age - 32) / 12, 0, 3))
        hairline = max(float(self.hairline(np.zeros(1))[0]), -0.8 * look.half_height)
        brows = -0.1 * look.half_height - 0.1 * look.half_width
        top, bottom = hairline + 0.015, brows - 0.02
        if n_lines == 0 or bottom - top < 0.03:  # no forehead showing (fringe, low hairline)
            return
        colour = _shade(look.skin, 0.6) + (int(90 + 120 * look.old),)
        for y in top + (bottom - top) * (np.arange(n_lines) + 1) / (n_lines + 1):
            self.draw.arc(
                self.box(0.0, y + 0.02, look.half_width * 0.55, 0.025),
                200,
                340,
                fill=colour,
                width=self.width(0.0035),
            )

    def beard(self) -> None:
        look = self.look
        if not look.attrs.beard:
            return
        h = look.half_height
        outline = self.face_outline(grow=0.006)
        cut = self.px(0.0, 0.05 * h)[1]
        self.draw.polygon([p for p in outline if p[1] > cut], fill=look.hair)
        # Cheeks stay bare; what is left is sideburns, jaw, chin and moustache.
        self.draw.ellipse(self.box(0.0, 0.1 * h, look.half_width * 0.78, 0.35 * h), fill=look.skin)

    def front_hair(self) -> None:
        look = self.look
        style = look.attrs.hair_style
        if look.recession > 0.4:  # what is left above the ears
            for side in (-1, 1):
                self.draw.ellipse(self.box(side * look.half_width * 0.98, -0.06, 0.03, 0.06), fill=look.hair)
        if look.recession >= 0.85:  # bald on top
            return
        volume = _HAIR_VOLUME[style] * (1.0 - 0.6 * look.recession)
        self.draw.polygon(self.hair_cap(volume), fill=look.hair)
        if style == "curly" and look.recession < 0.6:
            for x in np.linspace(-0.8, 0.8, 7):
                y = float(self.hairline(np.array([x]))[0])
                self.draw.ellipse(self.box(x * look.half_width, y, 0.028, 0.024), fill=_shade(look.hair, 0.9))
        strand = _shade(look.hair, 0.75) + (110,)
        for x in np.linspace(-0.5, 0.5, 5):  # a few strands for texture
            y = float(self.hairline(np.array([x]))[0])
            self.draw.line(
                [
                    self.px(x * look.half_width, y - 0.005),
                    self.px(x * look.half_width * 1.3, y - 0.07),
                ],
                fill=strand,
                width=self.width(0.004),
            )

    def glasses(self) -> None:
        look = self.look
        if not look.attrs.glasses:
            return
        w, h = look.half_width, look.half_height
        spacing = w * (0.42 + 0.035 * look.attrs.eye_spacing)
        frame = (35, 32, 32)
        for side in (-1, 1):
            self.draw.rounded_rectangle(
                self.box(side * spacing, -0.05 * h, 0.3 * w, 0.2 * w),
                radius=self.width(0.02),
                outline=frame,
                width=self.width(0.008),
                fill=(200, 220, 240, 40),
            )
            self.draw.line(
                [
                    self.px(side * (spacing + 0.3 * w), -0.05 * h),
                    self.px(side * w * 0.98, -0.07 * h),
                ],
                fill=frame,
                width=self.width(0.007),
            )
        self.draw.line(
            [self.px(-spacing + 0.3 * w, -0.05 * h), self.px(spacing - 0.3 * w, -0.05 * h)],
            fill=frame,
            width=self.width(0.007),
        )


def _random_colour(rng: np.random.Generator, low: int, high: int) -> Colour:
    return tuple(int(v) for v in rng.integers(low, high, 3))  # type: ignore[return-value]


def _background(rng: np.random.Generator) -> Image.Image:
    """A muted two-colour gradient in a random direction (smooth, so drawn small and upscaled)."""
    grey = np.full(3, 128.0)
    first = np.array(_random_colour(rng, 40, 235), float)
    second = np.array(_random_colour(rng, 30, 225), float)
    first, second = grey + 0.65 * (first - grey), grey + 0.65 * (second - grey)
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:_BACKGROUND_SIDE, 0:_BACKGROUND_SIDE] / _BACKGROUND_SIDE - 0.5
    t = np.clip(0.5 + xs * np.cos(angle) + ys * np.sin(angle), 0.0, 1.0)[..., None]
    return Image.fromarray((first + (second - first) * t).astype(np.uint8))


def _lighting(rng: np.random.Generator, side: int) -> np.ndarray:
    """Per-pixel gain: a brightness gradient from a random direction, a global level and tint."""
    angle = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0.1, 0.35)
    ys, xs = np.mgrid[0:side, 0:side] / side - 0.5
    gradient = 1.0 + strength * 2.0 * (xs * np.cos(angle) + ys * np.sin(angle))
    tint = 1.0 + rng.normal(0.0, 0.03, 3)
    return gradient[..., None] * rng.uniform(0.85, 1.12) * tint


def render_face(
    attrs: SpeakerAttributes,
    rng: np.random.Generator,
    size: int = 64,
    supersample: int = 3,
    framing: float = 1.0,
    motion: Motion | None = None,
) -> Image.Image:
    """One `size` x `size` RGB portrait of this speaker with random pose and lighting.

    `motion` opens the mouth, closes the eyes and turns the head (a talking video's frame);
    the same rng state with another motion gives the same scene with only those changed.

    `framing` magnifies the figure about the face centre: 1.0 is a head-and-shoulders
    portrait; ~1.6 frames the face as real face crops do (hairline to chin fill most of
    the image), so eyes and mouth are several pixels tall even at 64 px.
    """
    side = size * supersample
    look = _Look.of(attrs)
    painter = _Painter(look, side, _background(rng))

    shirt = _random_colour(rng, 30, 220)
    gaze = (float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1)))
    smile = float(rng.uniform(-0.3, 1.0))
    motion = motion or STILL
    painter.back_hair()
    painter.body(shirt)
    painter.head()
    painter.turned(motion)
    painter.forehead_lines()
    painter.beard()
    painter.eyes(gaze, motion.blink)
    painter.nose_and_mouth(smile, motion.opening, motion.rounding)
    painter.turned(STILL)
    painter.front_hair()
    painter.turned(motion)
    painter.glasses()

    # Pose: output pixel -> layer pixel through rotation about the head, scale and shift.
    angle = np.deg2rad(rng.uniform(-8.0, 8.0) + motion.roll)
    zoom = rng.uniform(1.06, 1.22) * framing
    shift_x, shift_y = rng.uniform(-0.045, 0.045, 2) * side
    head_x, head_y = painter.px(0.0, 0.0)
    out_x = head_x - (painter.layer_side - side) / 2 + shift_x
    out_y = head_y - (painter.layer_side - side) / 2 + shift_y
    cos_a, sin_a = np.cos(angle) / zoom, np.sin(angle) / zoom
    coeffs = (
        cos_a,
        sin_a,
        head_x - cos_a * out_x - sin_a * out_y,
        -sin_a,
        cos_a,
        head_y + sin_a * out_x - cos_a * out_y,
    )
    # Bilinear is enough here: the LANCZOS downsample that follows does the anti-aliasing.
    posed = painter.layer.transform((side, side), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    small = posed.resize((size, size), Image.Resampling.LANCZOS)
    # Lighting is smooth, so it is applied after downsampling, where it costs the least.
    lit = np.asarray(small, dtype=float) * _lighting(rng, size)
    return Image.fromarray(np.clip(lit, 0, 255).astype(np.uint8))
