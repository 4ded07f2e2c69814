"""Take docs/figures/napari_widget.png: the Segment (U-Net) widget in a napari window.

Opens sample_data/em_synthetic.tif in a napari window, docks the widget as the
Plugins menu does, segments the image with the bundled model and saves the
whole window. Needs a display; on a headless machine run it under Xvfb::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/figures/make_napari_screenshot.py
"""

from pathlib import Path

import napari
import tifffile
from PIL import Image
from qtpy.QtCore import QEventLoop, QTimer

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "figures" / "napari_widget.png"


def wait_until(condition, timeout_s: float = 600.0) -> None:
    """Run the Qt event loop until `condition()` holds."""
    loop = QEventLoop()
    timer = QTimer()
    timer.timeout.connect(lambda: loop.quit() if condition() else None)
    timer.start(100)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec_()
    timer.stop()
    if not condition():
        raise TimeoutError("the segmentation did not finish")


def pause(seconds: float) -> None:
    """Let Qt draw for a while."""
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec_()


def main() -> None:
    """Segment the sample in a napari window and save the window."""
    viewer = napari.Viewer(title="napari: biounet")
    viewer.window._qt_window.resize(1400, 860)
    image = tifffile.imread(ROOT / "sample_data" / "em_synthetic.tif")
    viewer.add_image(image, name="em_synthetic", scale=(0.004, 0.004), units=("um", "um"))
    _, widget = viewer.window.add_plugin_dock_widget("biounet", "Segment (U-Net)")
    widget.device.value = "cpu"
    widget.run_button.native.click()
    wait_until(lambda: widget.worker is None)
    labels = viewer.layers["em_synthetic labels"]
    labels.opacity = 0.45
    viewer.layers.selection.active = viewer.layers["em_synthetic"]
    viewer.scale_bar.visible = True
    viewer.reset_view()
    pause(2.0)
    # keep napari's pop-up notices (e.g. about its Qt binding) off the picture
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for notice in viewer.window._qt_window.findChildren(NapariQtNotification):
        notice.close()
    pause(1.0)
    viewer.screenshot(OUT, canvas_only=False, flash=False)
    # 256 colours (no dithering) keep the picture and a third of the bytes
    shot = Image.open(OUT).convert("RGB")
    shot.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        OUT, optimize=True
    )
    print(f"{OUT.relative_to(ROOT)}: {widget.status.value}")
    viewer.close()


if __name__ == "__main__":
    main()
