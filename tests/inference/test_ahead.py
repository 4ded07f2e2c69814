"""The look-ahead thread: order, errors, early stops, and that it really overlaps."""

import threading

import pytest

from biounet.inference.ahead import ahead


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_items_come_in_order(depth):
    assert list(ahead(iter(range(50)), depth)) == list(range(50))


def test_an_error_is_raised_at_its_item():
    def items():
        yield 1
        yield 2
        raise ValueError("tile 3: unreadable")

    got = []
    with pytest.raises(ValueError, match="tile 3"):
        for x in ahead(items()):
            got.append(x)
    assert got == [1, 2]


def test_stopping_early_stops_the_thread():
    made = []

    def items():
        for i in range(1000):
            made.append(i)
            yield i

    it = ahead(items(), depth=2)
    assert next(it) == 0
    it.close()
    assert not any(t.name == "biounet-ahead" for t in threading.enumerate())
    assert len(made) <= 4  # the item taken, two waiting, one being made


def test_the_next_item_is_made_while_the_caller_works_on_this_one():
    made = []
    ready = threading.Condition()

    def items():
        for i in range(3):
            with ready:
                made.append((i, threading.get_ident()))
                ready.notify_all()
            yield i

    for i in ahead(items()):
        if i < 2:  # while "writing" item i, item i + 1 appears (made in parallel)
            with ready:
                assert ready.wait_for(lambda i=i: len(made) > i + 1, timeout=10)
    assert all(ident != threading.get_ident() for _, ident in made)


def test_a_failing_sink_leaves_no_thread_behind(monkeypatch):
    import numpy as np

    import biounet.inference.segmentation as segmentation
    from biounet.inference.segmentation import as_source, plan_segmentation, segment_into
    from biounet.inference.sinks import ArraySink
    from biounet.network.unet import UNet, UNetConfig
    from biounet.options import OutputOptions, TileOptions

    class FullDisk(ArraySink):
        def write(self, tiles, layout, tile, compression):
            self.kept = tiles  # a reference that outlives the call (a traceback, a cache)
            next(iter(tiles))
            raise OSError("disk full")

    monkeypatch.setattr(segmentation, "LOOK_AHEAD", 1)
    started = []
    real = segmentation.ahead
    monkeypatch.setattr(segmentation, "ahead", lambda *a: started.append(1) or real(*a))
    net = UNet(UNetConfig(features=4, depth=2))
    source = as_source(np.zeros((300, 300), np.uint8))
    plan = plan_segmentation(source, net, TileOptions(window=92), None)
    assert plan.n_tiles > 3
    output = OutputOptions(kind="probabilities")
    with pytest.raises(OSError, match="disk full"):
        segment_into(source, net, sink := FullDisk(), plan, output=output)
    assert not any(t.name == "biounet-ahead" for t in threading.enumerate())
    assert sink.kept is not None and started
