"""The public surface of align.data: every name importable, one per line in __init__."""

import align.data

PUBLIC = [
    "CaptionCondition", "ExclusionReport", "ImageCondition", "PreferencePair", "PreferenceSet", "Stimulus",
    "StimulusError", "StimulusSet", "caption_condition", "image_condition", "list_caption_conditions",
    "list_image_conditions", "load_coco", "load_flickr", "load_image_captions", "load_pick_a_pic", "order_hash",
    "synthetic_scenes", "synthetic_set_name",
]


def test_every_public_name_is_exported():
    exported = {n for n in vars(align.data) if not n.startswith("_") and n[0].isalpha()}
    assert set(PUBLIC) <= exported


def test_stimulus_errors_are_value_errors():
    assert issubclass(align.data.StimulusError, ValueError)
