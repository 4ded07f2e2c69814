import numpy as np
import pytest
import yaml
from scipy import ndimage as ndi

from biounet.training.augment import (
    AugmentConfig,
    TileTransform,
    apply_transform,
    control_displacements,
    displacement_field,
    draw_transform,
    gray_curve,
    random_tile,
    tile_coordinates,
)

ELASTIC_ONLY = AugmentConfig(rotation=0.0, flip=False, shift=False, gray=False)


def smooth_image(rng, shape=(64, 64), sigma=3.0):
    return ndi.gaussian_filter(rng.random(shape), sigma).astype(np.float32)[None]


def centred(shape, size, **kwargs):
    """A transform whose tile is centred on the image, pixel-aligned."""
    return TileTransform(((shape[0] - 1) / 2, (shape[1] - 1) / 2), **kwargs)


def test_zero_displacement_is_the_identity(rng):
    image = rng.random((2, 40, 48)).astype(np.float32)
    classes = rng.integers(0, 2, (40, 48))
    weights = rng.random((40, 48)).astype(np.float32)
    transform = TileTransform((19.5, 23.5), displacement=np.zeros((2, 3, 3)))
    for order in (1, 3):
        tile, target, weight = apply_transform(
            image[:, :, 4:44],
            classes[:, 4:44],
            weights[:, 4:44],
            TileTransform((19.5, 19.5), displacement=np.zeros((2, 3, 3))),
            input_size=40,
            output_size=40,
            config=AugmentConfig(image_order=order),
        )
        np.testing.assert_allclose(tile, image[:, :, 4:44], atol=1e-5, rtol=0)
        np.testing.assert_array_equal(target, classes[:, 4:44])
        np.testing.assert_allclose(weight, weights[:, 4:44], atol=1e-5, rtol=0)
    # a 40 x 40 tile from the 40 x 48 image, centred at column 23.5
    tile, _, _ = apply_transform(
        image, classes, weights, transform, input_size=40, output_size=40, config=AugmentConfig()
    )
    np.testing.assert_allclose(tile, image[:, :, 4:44], atol=1e-5, rtol=0)
    assert not displacement_field(np.zeros((2, 3, 3)), 17).any()


def test_no_augmentation_is_the_centre_crop(rng):
    image = rng.random((1, 50, 60)).astype(np.float32)
    classes = rng.integers(0, 2, (50, 60))
    weights = rng.random((50, 60)).astype(np.float32)
    tile, target, weight = random_tile(
        image, classes, weights, input_size=44, output_size=20, rng=rng, config=AugmentConfig.off()
    )
    # output region centred: rows 15..34, columns 20..39; input tile 12 px more on each side
    np.testing.assert_allclose(tile, image[:, 3:47, 8:52], atol=1e-5, rtol=0)
    np.testing.assert_array_equal(target, classes[15:35, 20:40])
    np.testing.assert_allclose(weight, weights[15:35, 20:40], atol=1e-5, rtol=0)
    assert tile.dtype == np.float32 and target.dtype == np.int64 and weight.dtype == np.float32


def test_mirroring_at_the_borders(rng):
    image = rng.random((1, 30, 30)).astype(np.float32)
    labels = rng.integers(0, 3, (30, 30))
    tile, target, _ = random_tile(
        image, labels, image[0], input_size=50, output_size=50, rng=rng, config=AugmentConfig.off()
    )
    # numpy "reflect" = mirror without repeating the edge pixel (PAPER.md ambiguity 13)
    np.testing.assert_allclose(tile[0], np.pad(image[0], 10, mode="reflect"), atol=1e-5, rtol=0)
    np.testing.assert_array_equal(target, np.pad(labels, 10, mode="reflect"))


def test_resampling_matches_scipy_map_coordinates(rng):
    # an independent implementation of the same sampling: scipy, mode "mirror"
    image = rng.random((2, 30, 41)).astype(np.float32)
    labels = rng.integers(0, 4, (30, 41))
    config = AugmentConfig(gray=False, elastic_sigma=6.0)
    for _ in range(4):
        transform = draw_transform((30, 41), output_size=36, rng=rng, config=config)
        tile, target, weight = apply_transform(
            image, labels, image[1], transform, input_size=60, output_size=36, config=config
        )
        coords = tile_coordinates(transform, 60)
        for c in range(2):
            expected = ndi.map_coordinates(image[c], coords, order=1, mode="mirror")
            np.testing.assert_allclose(tile[c], expected, atol=2e-4, rtol=0)
        inner = coords[:, 12:48, 12:48]
        expected = ndi.map_coordinates(labels, inner, order=0, mode="mirror")
        assert (target != expected).mean() < 1e-3  # rounding ties only
        expected = ndi.map_coordinates(image[1], inner, order=1, mode="mirror")
        np.testing.assert_allclose(weight, expected, atol=2e-4, rtol=0)


def test_field_matches_elasticdeform(rng):
    elasticdeform = pytest.importorskip("elasticdeform")
    image = smooth_image(rng, (61, 61))
    control = control_displacements(rng, sigma=4.0)
    ours, _, _ = apply_transform(
        image,
        np.zeros((61, 61), np.uint8),
        image[0],
        centred((61, 61), 61, displacement=control),
        input_size=61,
        output_size=61,
        config=AugmentConfig(),
    )
    theirs = elasticdeform.deform_grid(image[0].astype(np.float64), control, order=1, mode="mirror")
    np.testing.assert_allclose(ours[0], theirs, atol=1e-5, rtol=0)


def test_control_point_std_is_ten_px():
    rng = np.random.default_rng(7)
    draws = np.stack([control_displacements(rng) for _ in range(3000)])
    assert draws.shape == (3000, 2, 3, 3)
    assert abs(draws.std() - 10.0) < 0.2
    assert abs(draws.mean()) < 0.2
    # the interpolated field passes through the control points (corners, centre)
    field = displacement_field(draws[0], 101)
    np.testing.assert_allclose(field[:, ::50, ::50], draws[0], atol=1e-4, rtol=0)
    # and draw_transform uses the configured spread
    config = AugmentConfig(elastic_sigma=3.0, elastic_grid=4)
    transforms = [
        draw_transform((64, 64), output_size=20, rng=rng, config=config) for _ in range(500)
    ]
    spread = np.stack([t.displacement for t in transforms])
    assert spread.shape == (500, 2, 4, 4) and abs(spread.std() - 3.0) < 0.1


def test_labels_stay_in_their_label_set(rng):
    image = rng.random((1, 64, 64)).astype(np.float32)
    labels = rng.choice([0, 1, 4], size=(64, 64))
    for _ in range(10):
        _, target, weight = random_tile(
            image, labels, image[0], input_size=92, output_size=60, rng=rng
        )
        assert set(np.unique(target)) <= {0, 1, 4}
        assert weight.min() >= 0 and weight.max() <= 1


def checkerboard(size, cell):
    yy, xx = np.mgrid[0:size, 0:size]
    return ((yy // cell + xx // cell) % 2).astype(np.uint8)


def edge_pixels(labels):
    """Pixels with a different label among their 8 neighbours."""
    grown = ndi.maximum_filter(labels, 3) != ndi.minimum_filter(labels, 3)
    return grown


def test_checkerboard_and_its_label_stay_aligned(rng):
    board = checkerboard(96, 12)
    image = board.astype(np.float32)[None]
    config = AugmentConfig(gray=False, rotation=30.0)
    for _ in range(5):
        tile, target, _ = random_tile(
            image,
            board,
            board.astype(np.float32),
            input_size=80,
            output_size=80,
            rng=rng,
            config=config,
        )
        mismatch = (tile[0] > 0.5) != (target == 1)
        assert mismatch.mean() < 0.01
        assert not mismatch[~edge_pixels(target)].any()  # only where the label changes


def test_thresholded_image_matches_labels_after_full_augmentation(rng):
    image = smooth_image(rng, (128, 128), sigma=8.0)
    image = (image - image.min()) / (image.max() - image.min())
    labels = (image[0] > 0.5).astype(np.uint8)
    for _ in range(6):
        transform = draw_transform((128, 128), output_size=100, rng=rng, config=AugmentConfig())
        tile, target, _ = apply_transform(
            image,
            labels,
            image[0],
            transform,
            input_size=140,
            output_size=100,
            config=AugmentConfig(),
        )
        threshold = gray_curve(np.array([0.5], np.float32), *transform.gray)[0]
        inner = tile[0, 20:120, 20:120]
        mismatch = (inner > threshold) != (target == 1)
        assert mismatch.mean() < 0.02
        assert not mismatch[~edge_pixels(target)].any()


def test_rotation_by_90_degrees_and_flips(rng):
    image = rng.random((1, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 5, (32, 32))
    base = dict(input_size=32, output_size=32, config=AugmentConfig())
    _, target, _ = apply_transform(
        image, labels, image[0], centred((32, 32), 32, angle=90.0), **base
    )
    assert any(np.array_equal(target, np.rot90(labels, k)) for k in (1, 3))
    tile, target, _ = apply_transform(
        image, labels, image[0], centred((32, 32), 32, flip=(True, False)), **base
    )
    np.testing.assert_array_equal(target, labels[::-1])
    np.testing.assert_allclose(tile[0], image[0, ::-1], atol=1e-5, rtol=0)


def test_tile_positions_keep_the_output_inside(rng):
    config = AugmentConfig(elastic=False, rotation=0.0, flip=False, gray=False)
    centres = np.array(
        [
            draw_transform((512, 600), output_size=388, rng=rng, config=config).centre
            for _ in range(400)
        ]
    )
    first = centres - (388 - 1) / 2
    assert first.min() == 0 and first[:, 0].max() == 124 and first[:, 1].max() == 212
    assert np.all(first == np.round(first))  # pixel-aligned: no interpolation without warps
    small = draw_transform((100, 120), output_size=388, rng=rng, config=config).centre
    assert -288 <= small[0] - 193.5 <= 0


def test_same_seed_same_tile(rng):
    image = smooth_image(rng, (80, 80))
    labels = (image[0] > image.mean()).astype(np.uint8)
    a = random_tile(
        image, labels, image[0], input_size=60, output_size=40, rng=np.random.default_rng(3)
    )
    b = random_tile(
        image, labels, image[0], input_size=60, output_size=40, rng=np.random.default_rng(3)
    )
    c = random_tile(
        image, labels, image[0], input_size=60, output_size=40, rng=np.random.default_rng(4)
    )
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_paper_tile_shapes(rng):
    image = rng.random((1, 512, 512)).astype(np.float32)
    classes = (image[0] > 0.5).astype(np.uint8)
    tile, target, weight = random_tile(
        image, classes, image[0], input_size=572, output_size=388, rng=rng
    )
    assert tile.shape == (1, 572, 572) and target.shape == weight.shape == (388, 388)
    with pytest.raises(ValueError, match="even difference"):
        random_tile(image, classes, image[0], input_size=572, output_size=387, rng=rng)
    with pytest.raises(ValueError, match="do not match"):
        random_tile(image, classes[:10], image[0], input_size=572, output_size=388, rng=rng)


def test_gray_curve_draws_are_monotone_within_the_ranges():
    rng = np.random.default_rng(0)
    config = AugmentConfig()
    x = np.linspace(-0.2, 1.2, 57).astype(np.float32)
    for _ in range(200):
        black, mid, white = draw_transform((8, 8), output_size=4, rng=rng, config=config).gray
        assert -0.05 <= black <= 0.05 and 0.95 <= white <= 1.05
        y = gray_curve(x.copy(), black, mid, white)
        slopes = np.diff(y) / np.diff(x)
        assert slopes.min() >= 0.8 - 1e-4 and slopes.max() <= 1.2 + 1e-4


def test_tile_coordinates_compose_shift_and_rotation():
    coords = tile_coordinates(TileTransform((10.0, 20.0), angle=90.0), 3)
    # a 90-degree turn maps the row offset to the column offset
    np.testing.assert_allclose(coords[:, 1, 1], (10, 20), atol=1e-5, rtol=0)
    np.testing.assert_allclose(coords[:, 0, 1], (10, 19), atol=1e-5, rtol=0)


def test_config_validation_and_round_trip():
    config = AugmentConfig(elastic_sigma=5.0, gray_black=[-0.1, 0.1], image_order=3)
    assert config.gray_black == (-0.1, 0.1)
    plain = config.to_dict()
    assert AugmentConfig.from_dict(yaml.safe_load(yaml.safe_dump(plain))) == config
    for bad in (
        {"rotation": 200},
        {"elastic_grid": 1},
        {"image_order": 2},
        {"weight_order": 3},
        {"gray_slope": (1.2, 0.8)},
        {"gray_white": (0.1, 0.2)},
    ):
        with pytest.raises(ValueError, match="AugmentConfig"):
            AugmentConfig(**bad)
    with pytest.raises(ValueError, match="unknown AugmentConfig field"):
        AugmentConfig.from_dict({"sigma": 10})
    off = AugmentConfig.off()
    assert not (off.elastic or off.flip or off.shift or off.gray or off.rotation)
