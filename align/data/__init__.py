"""Stimulus sets and perturbations.

Loaders return a ``StimulusSet`` (paired images and captions, optional masks and groups); perturbations are
named conditions on images (``image_condition``) or captions (``caption_condition``); nothing is left out
silently (``ExclusionReport``). Copies of one stimulus (same image bytes or same captions) are refused by the file
loaders unless ``duplicates="group"``, which keeps them in one cross-validation fold (``group_fold_ids``).
"""

from align.data._folder import load_coco
from align.data._folder import load_flickr
from align.data._folder import load_image_captions
from align.data._perturb import CaptionCondition
from align.data._perturb import ImageCondition
from align.data._perturb import caption_condition
from align.data._perturb import image_condition
from align.data._perturb import list_caption_conditions
from align.data._perturb import list_image_conditions
from align.data._preference import PreferencePair
from align.data._preference import PreferenceSet
from align.data._preference import load_pick_a_pic
from align.data._report import ExclusionReport
from align.data._stimuli import DuplicateStimulusError
from align.data._stimuli import Stimulus
from align.data._stimuli import StimulusError
from align.data._stimuli import StimulusSet
from align.data._stimuli import group_fold_ids
from align.data._stimuli import order_hash
from align.data._stimuli import stimulus_set_name
from align.data._synthetic import describe_scene
from align.data._synthetic import render_scene
from align.data._synthetic import synthetic_scenes
from align.data._synthetic import synthetic_set_name
from align.data._synthetic import N_CAPTIONS
from align.data._report import make_report
from align.data._stimuli import repeated
