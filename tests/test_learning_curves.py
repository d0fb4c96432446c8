"""The end-of-fit learning curves: every text inside the figure and clear of the others, and every
recorded series visible, however few its points."""

import pytest
from matplotlib.text import Text

from seqlab.reports.learning_curves import DPI, LearningCurves


def drawn_texts(figure) -> list[Text]:
    """The title, the legend's labels, the axis labels and the tick labels inside each axis's limits
    (the locator also places ticks just outside them, which are laid out but not drawn)."""
    [title] = figure.texts  # the figure's one text of its own: its title
    texts = [title, *figure.legends[0].get_texts()]
    for axis in figure.axes:
        texts += [axis.xaxis.label, axis.yaxis.label]
        for ticks, labels, (low, high) in (
            (axis.get_xticks(), axis.get_xticklabels(), axis.get_xlim()),
            (axis.get_yticks(), axis.get_yticklabels(), axis.get_ylim()),
        ):
            texts += [label for tick, label in zip(ticks, labels) if low <= tick <= high]
    return [text for text in texts if text.get_text()]


def recorded(steps: int, metric: str | None, metric_points: int) -> dict[str, list[list[float]]]:
    every = steps // 5
    history = {
        # Losses whose tick labels take four characters (0.48), as a classifier's do.
        "train/loss": [[step, 0.75 - 0.35 * step / steps] for step in range(1, steps + 1)],
        "val/loss": [[step, 0.6 - 0.2 * step / steps] for step in range(every, steps + 1, every)],
    }
    if metric:
        history[f"train/{metric}"] = [[steps * (i + 1) // metric_points, 0.7 + 0.01 * i] for i in range(metric_points)]
        history[f"val/{metric}"] = [[step, 0.6 + 0.2 * step / steps] for step in range(every, steps + 1, every)]
    return history


@pytest.mark.parametrize(
    ("monitor", "metric_points", "run_name"),
    [
        ("val/acc", 1, "11-34-02"),
        ("val/acc", 4, "2026-11-30_11-34-02"),
        ("val/loss", 0, "2026-11-30_11-34-02"),
        ("val/loss", 0, "imdb_pretrain_lm_256_word_windows_seed_42"),
    ],
)
def test_every_text_lies_inside_the_figure_and_every_series_shows(tmp_path, monitor, metric_points, run_name):
    metric = monitor.partition("/")[2]
    curves = LearningCurves(tmp_path / run_name / "learning_curves.png", monitor)
    curves.history = recorded(12000, None if metric == "loss" else metric, metric_points)
    figure = curves.figure()
    figure.set_dpi(DPI)
    figure.draw_without_rendering()  # lays out every text as savefig would

    texts = drawn_texts(figure)
    assert {"step", "loss", "train", "val"} <= {text.get_text() for text in texts}
    for text in texts:
        extent = text.get_window_extent()
        assert figure.bbox.x0 <= extent.x0 and extent.x1 <= figure.bbox.x1, f"{text.get_text()!r} leaves the figure: {extent}"
        assert figure.bbox.y0 <= extent.y0 and extent.y1 <= figure.bbox.y1, f"{text.get_text()!r} leaves the figure: {extent}"
    [legend] = figure.legends
    [title] = figure.texts
    assert title.get_text().startswith("Learning curves")
    assert not legend.get_window_extent().overlaps(title.get_window_extent())

    for axis in figure.axes:
        for line in axis.get_lines():
            if len(line.get_xdata()) < 2:  # a line through one point draws nothing without a marker
                assert line.get_marker() not in (None, "", "None", " "), line.get_label()
