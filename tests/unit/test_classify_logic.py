"""Pure logic around the classifier: softmax scoring, document summaries, review rules, routing, checkpoint key
matching and the classification settings. No model is loaded here (tests/integration/test_classification.py
runs the real ones)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from schemas.errors import ConfigError
from schemas.settings import ClassifierSettings, load_settings
from tasks.classify.prototypes import Prototypes, review_reasons, summarise, with_words
from tasks.classify.words import BASELINE_CUES, cue_counts
from tasks.models.embedders import match_state_dict

LABELS = ("invoice", "receipt", "photo")


def _config(**kw: float) -> ClassifierSettings:
    return ClassifierSettings(
        labels={label: [label] for label in LABELS},
        templates=["{}"],
        routes={"invoice": "invoice", "receipt": "receipt", "photo": "none"},
        **kw,
    )


def test_probabilities_are_a_softmax_over_scaled_cosines() -> None:
    prototypes = Prototypes(labels=LABELS, matrix=np.eye(3, dtype=np.float32), logit_scale=10.0)
    query = np.array([[3.0, 1.0, 0.0]], dtype=np.float32)  # not normalised: scoring must normalise it
    cos = query / np.linalg.norm(query)
    expected = np.exp(10 * cos) / np.exp(10 * cos).sum()
    np.testing.assert_allclose(prototypes.probabilities(query), expected, rtol=1e-5)


def test_a_page_close_to_a_corrected_exemplar_takes_its_label() -> None:
    page = np.array([0.9, 0.1, 0.42], dtype=np.float32)  # closest to the invoice prototype
    plain = Prototypes(labels=LABELS, matrix=np.eye(3, dtype=np.float32), logit_scale=10.0)
    assert LABELS[int(plain.probabilities(page[None]).argmax())] == "invoice"
    taught = Prototypes(
        labels=LABELS,
        matrix=np.eye(3, dtype=np.float32),
        logit_scale=10.0,
        exemplars=(page / np.linalg.norm(page))[None],
        exemplar_labels=np.array([1]),  # a reviewer said: receipt
    )
    assert LABELS[int(taught.probabilities(page[None]).argmax())] == "receipt"
    other = np.array([[0.1, 0.0, 1.0]], dtype=np.float32)  # a page unlike the exemplar keeps its class
    assert (
        LABELS[int(taught.probabilities(other).argmax())] == LABELS[int(plain.probabilities(other).argmax())] == "photo"
    )


def test_summary_takes_the_mean_over_pages_and_routes_the_label() -> None:
    page_probs = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1]])
    c = summarise(page_probs, LABELS, [1, 2], _config(), "m", encoded=2)
    assert (c.label, c.runner_up, c.route) == ("invoice", "receipt", "invoice")
    assert c.probability == pytest.approx(0.5) and c.margin == pytest.approx(0.1)
    assert [(p.page_number, p.label) for p in c.pages] == [(1, "invoice"), (2, "receipt")]
    photo = summarise(np.array([[0.1, 0.1, 0.8]]), LABELS, [1], _config(), "m", encoded=0)
    assert photo.label == "photo" and photo.route is None  # photos: no extraction


def test_low_probability_and_small_margin_go_to_review() -> None:
    config = _config(review_min_probability=0.6, review_min_margin=0.2)
    confident = summarise(np.array([[0.9, 0.05, 0.05]]), LABELS, [1], config, "m", 1)
    assert review_reasons(confident, config) == []
    unsure = summarise(np.array([[0.45, 0.35, 0.2]]), LABELS, [1], config, "m", 1)
    reasons = review_reasons(unsure, config)
    assert [(r.stage, r.code) for r in reasons] == [("classify", "uncertain_class"), ("classify", "ambiguous_class")]
    assert reasons[0].message.startswith("uncertain document class: 'invoice' at probability 0.45")
    assert "'invoice' 0.45 vs 'receipt' 0.35, margin 0.10" in reasons[1].message
    assert reasons[0].value == pytest.approx(0.45) and reasons[1].value == pytest.approx(0.10)
    assert str(reasons[0]) == reasons[0].message


def test_checkpoint_keys_from_another_implementation_are_matched_in_order() -> None:
    target = {"conv.weight": torch.zeros(4, 3), "bn.weight": torch.zeros(4), "bn.num_batches_tracked": torch.zeros(())}
    same = {"conv.weight": torch.ones(4, 3), "bn.weight": torch.ones(4), "bn.num_batches_tracked": torch.zeros(())}
    assert match_state_dict(same, target).keys() == target.keys()
    other = {"_conv.weight": torch.ones(4, 3), "_bn.weight": torch.ones(4), "_fc.weight": torch.ones(10, 4)}
    mapped = match_state_dict(other, target)
    assert set(mapped) == {"conv.weight", "bn.weight"} and torch.equal(mapped["bn.weight"], torch.ones(4))
    with pytest.raises(ConfigError, match="does not fit"):
        match_state_dict({"a": torch.ones(4, 4), "b": torch.ones(4)}, target)


def test_classification_settings_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCFLOW_CLASS_ROUTES", '{"invoice": "invoice"}')
    with pytest.raises(ConfigError, match="DOCFLOW_CLASS_ROUTES has no route for receipt"):
        load_settings()
    monkeypatch.setenv("DOCFLOW_CLASS_LABELS", '{"a": ["x"], "b": ["y"]}')
    monkeypatch.setenv("DOCFLOW_CLASS_ROUTES", '{"a": "invoice", "b": "cheque"}')
    with pytest.raises(ConfigError, match="unknown schema"):
        load_settings()
    monkeypatch.setenv("DOCFLOW_CLASS_ROUTES", '{"a": "invoice", "b": "none"}')
    monkeypatch.setenv("DOCFLOW_CLASS_TEMPLATES", '["a photo"]')
    with pytest.raises(ConfigError, match="DOCFLOW_CLASS_TEMPLATES"):
        load_settings()
    monkeypatch.setenv("DOCFLOW_CLASS_TEMPLATES", '["a scan of {}."]')
    monkeypatch.setenv("DOCFLOW_CLASS_EXAMPLES", "")
    config = load_settings().classifier
    assert config.examples is None and config.route("b") is None and config.route("a") == "invoice"


def test_a_page_s_cue_words_outweigh_a_look_that_points_elsewhere() -> None:
    config = _config(text_sharpness=2.0, image_weight=0.5)
    image = np.array([[0.6, 0.35, 0.05]])  # a column of small print: the image says invoice
    till = "TOTAL RM 12.50\nCASH 20.00\nCHANGE 7.50\nROUNDING ADJ 0.00\nThank you, please come again"
    (joint,) = with_words(image, [till], LABELS, config)
    assert LABELS[int(joint.argmax())] == "receipt" and joint.sum() == pytest.approx(1.0)
    billed = "INVOICE NO 42\nBILL TO: Acme Ltd\nDUE DATE 2024-05-01\nPayment terms: 30 days\nIBAN DE89 3704"
    (joint,) = with_words(np.array([[0.3, 0.65, 0.05]]), [billed], LABELS, config)
    assert LABELS[int(joint.argmax())] == "invoice"


def test_a_page_without_words_keeps_its_image_probabilities() -> None:
    image = np.array([[0.2, 0.1, 0.7], [0.6, 0.35, 0.05]])
    joint = with_words(image, ["", "  12 \n"], LABELS, _config(text_sharpness=2.0))
    np.testing.assert_allclose(joint, image)


def test_cue_counts_name_each_cue_once_and_other_has_a_baseline() -> None:
    labels = ("receipt", "invoice", "other", "photo")
    counts = cue_counts("CASH 10.00 CASH 5.00 change 1.00", labels)
    assert counts.tolist() == [2.0, 0.0, BASELINE_CUES, 0.0]


def test_in_doubt_between_a_generic_page_and_a_receipt_the_receipt_schema_is_tried() -> None:
    labels = ("invoice", "receipt", "other")
    config = ClassifierSettings(
        labels={label: [label] for label in labels},
        templates=["{}"],
        routes={"invoice": "invoice", "receipt": "receipt", "other": "generic"},
        review_min_margin=0.1,
    )
    doubtful = summarise(np.array([[0.1, 0.43, 0.47]]), labels, [1], config, "m", 1)
    assert (doubtful.label, doubtful.route) == ("other", "receipt")
    clear = summarise(np.array([[0.1, 0.2, 0.7]]), labels, [1], config, "m", 1)
    assert (clear.label, clear.route) == ("other", "generic")


def test_a_page_a_reviewer_corrected_is_known_again_whatever_its_words() -> None:
    page = np.array([0.9, 0.1, 0.42], dtype=np.float32)
    taught = Prototypes(
        labels=LABELS,
        matrix=np.eye(3, dtype=np.float32),
        logit_scale=10.0,
        exemplars=(page / np.linalg.norm(page))[None],
        exemplar_labels=np.array([1]),
    )
    rescan = page + np.float32(0.01)  # the same page again
    other = np.array([0.1, 0.9, 0.2], dtype=np.float32)
    assert taught.taught(np.stack([rescan, other])).tolist() == [True, False]
    assert Prototypes(labels=LABELS, matrix=np.eye(3), logit_scale=10.0).taught(rescan[None]).tolist() == [False]
