"""Figures: label images keep every class distinguishable and say which colour is which class."""

import numpy as np
import pytest
import torch

from regnet.analysis.plots import plot_planes, save_figure


def _drawn_colours(fig) -> list[set]:
    out = []
    for ax in fig.axes:
        if ax.images:
            im = ax.images[0]
            rgba = im.to_rgba(im.get_array())
            out.append({tuple(c) for c in rgba.reshape(-1, 4).tolist()})
    return out


def _image(labels, zoom=0.01, plane=0):
    return {"labels": torch.tensor(labels), "zoom": zoom, "plane": plane}


def test_many_class_planes_give_every_class_present_its_own_colour(tmp_path):
    # CIFAR-100-like labels: with a 10-colour map clipped at class 9, classes 57 and 99 would share a colour
    images = [_image([[3, 57], [99, 3]]), _image([[57, 12], [12, 12]], plane=1)]
    fig = plot_planes(images, "cifar100")
    colours = _drawn_colours(fig)
    assert [len(c) for c in colours] == [3, 2]
    assert len(colours[0] | colours[1]) == 4  # 3, 12, 57, 99: four colours, the same class the same colour
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["3", "12", "57", "99"]
    assert save_figure(fig, tmp_path / "p.png").stat().st_size > 0


def test_ten_class_planes_use_fixed_colours_and_class_names():
    names = [f"c{i}" for i in range(10)]
    a = plot_planes([_image([[0, 7]])], "model a", class_names=names)
    b = plot_planes([_image([[7, 7]])], "model b", class_names=names)
    (colours_a,), (colours_b,) = _drawn_colours(a), _drawn_colours(b)
    assert len(colours_a) == 2 and colours_b < colours_a  # class 7 has one colour in both figures
    assert [t.get_text() for t in b.legends[0].get_texts()] == ["c7"]
    axes = [ax for ax in a.axes if ax.images]
    assert axes[0].get_xlabel().startswith("b") and axes[0].get_ylabel().startswith("a")
    assert np.isfinite(axes[0].images[0].get_array()).all()


def test_many_panels_wrap_into_rows_and_big_confusion_matrices_stay_readable_sized():
    from regnet.analysis.plots import panel_grid, plot_matrix

    fig, axes = panel_grid(21)  # ResNet-18's weight matrices
    assert len(axes) == 21 and len(fig.axes) == 24
    assert sum(ax.axison for ax in fig.axes) == 21
    assert tuple(fig.get_size_inches()) == (2.8 * 6, 2.5 * 4)
    assert max(plot_matrix(np.eye(100)).get_size_inches()) <= 12


def test_prediction_galleries_keep_the_most_and_least_confident_right_and_wrong_test_images(tmp_path):
    from regnet.callbacks.predictions import PredictionGallery

    gallery, images = PredictionGallery(k=2, dirpath=str(tmp_path)), torch.arange(8.0).view(8, 1, 1, 1)
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    # class-1 logit per image: images 0–3 (label 0) right with falling confidence, 4–7 (label 1) wrong, 4 most
    logit1 = torch.tensor([-3.0, -2.0, -1.0, -0.5, -4.0, -3.0, -2.0, -1.0])
    logits = torch.stack([torch.zeros(8), logit1], 1)
    for part in (slice(0, 3), slice(3, 8)):  # two batches: the running top-k spans them
        gallery.on_test_batch_end(None, None, logits[part], (images[part], labels[part]), 0)
    kept = {name: v[1].flatten().tolist() for name, v in gallery.kept.items()}  # the images are their indices
    assert kept == {"most confident, right": [0, 1], "least confident, right": [3, 2],
                    "most confident, wrong": [4, 5], "least confident, wrong": [7, 6]}  # fmt: skip
    confidence = gallery.kept["most confident, right"][0][0]
    assert float(confidence) == pytest.approx(torch.tensor([0.0, -3.0]).softmax(0)[0].item())

    class Trainer:
        is_global_zero, default_root_dir = True, str(tmp_path)

    gallery.on_test_epoch_end(Trainer(), None)
    assert (tmp_path / "predictions.png").stat().st_size > 0 and gallery.kept == {}
