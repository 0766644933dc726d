"""Self-supervised body-part regression (SSBR): each axial CT slice gets a scalar body position.

After Yan et al., *Unsupervised body part regression via spatially self-ordering convolutional
neural networks* (ISBI 2018), the body-location cue of *Deep Lesion Graphs in the Wild* (CVPR
2018): DeepLesion's ``Normalized_lesion_location`` z comes from such a regressor. It learns from
unlabelled volumes only, using the one thing every CT volume tells for free: the order of its
slices.

**Direction.** The score grows with the slice number, which we assume grows from head to feet, as
in DeepLesion's ``Images_png`` layout (its normalised z grows from head to feet too). A volume
stored the other way round would teach the opposite direction: do not mix both in one training
set. After calibration, :meth:`SSBRModel.normalised_z` maps the score to about [0, 1]: 0 at the
top of the body range seen in training (head), 1 at the bottom (feet), clipped.

**Network.** VGG-16's convolutional layers (:func:`lesionkg.model.network.vgg16_features`,
``vgg16_bn`` by default since training starts from random weights; ``vgg16`` takes torchvision's
ImageNet file), then a 1 x 1 convolution with 512 channels, ReLU, global average pooling and a
linear layer to one score per slice.

**Input.** One slice in HU, clipped to ``window`` (HU), mapped to [0, 1], normalised with the grey
mean and standard deviation of torchvision's ImageNet statistics (so optional ImageNet weights see
inputs on their usual scale), resized to ``size`` x ``size`` pixels (bilinear, antialiased) and
replicated to 3 channels.

**Training.** A sample is a group of m = ``slices_per_group`` (8) equidistant slices of one volume:
a random stride k, then a random start such that all m slice numbers start + j k exist (volumes
may have gaps, as DeepLesion's sub-volumes do). With s_j the score of slice j and
Delta_j = s_{j+1} - s_j, the loss of a group is

    L_order = -sum_{j=0}^{m-2} log sigmoid(Delta_j)              (slices come in order)
    L_dist  = sum_{j=0}^{m-3} smoothL1(Delta_{j+1} - Delta_j)    (equal steps, equal score steps)

and a batch's loss is the mean over its groups of L_order + ``dist_weight`` L_dist. The groups of
step t come from a random generator seeded with (seed, t), so a resumed run draws the same groups
as an uninterrupted one. Plain SGD with momentum at a constant learning rate: a schedule tied to
the total number of steps would change meaning when a finished run is continued with more steps.

**Calibration.** Raw scores have no unit. After training, the slices of randomly chosen training
volumes (up to ``calibration_slices``) are scored; their 1st and 99th percentiles (by default)
become 0 and 1 of the normalised z.

**Data.** A volume is a folder of 16-bit PNG slices ``{slice:03d}.png`` whose pixel is HU + 32768
(DeepLesion's ``Images_png/{patient}_{study}_{series}/`` layout); a training set is a folder of
such volume folders (or a folder holding ``Images_png/``). Volumes without m equidistant slices are
skipped and counted.

**Checkpoint** (kind ``"ssbr"``, see :mod:`lesionkg.model.checkpoint`): ``config.json`` holds this
module's :class:`SSBRConfig`, the backbone weights used at the start (file name and sha256, or
null) and the calibration; ``weights.pt`` the network; ``optimizer.pt`` the step and SGD state
(tensors and plain containers only, ``weights_only=True``); ``metrics.json`` the loss history,
timings and volume counts; ``loss_curve.png`` the loss curve.

Modules: :mod:`~lesionkg.model.ssbr.config`, :mod:`~lesionkg.model.ssbr.volumes` (data),
:mod:`~lesionkg.model.ssbr.network`, :mod:`~lesionkg.model.ssbr.losses`,
:mod:`~lesionkg.model.ssbr.training` and :mod:`~lesionkg.model.ssbr.prediction`.
"""

from lesionkg.model.ssbr.config import (
    DIRECTION,
    KIND,
    LOSS_CURVE_FILE,
    OPTIMIZER_FILE,
    SSBRConfig,
)
from lesionkg.model.ssbr.losses import order_loss, spacing_loss, ssbr_loss
from lesionkg.model.ssbr.network import SSBRNet
from lesionkg.model.ssbr.prediction import SlicePrediction, SSBRModel, load_ssbr, predict_slices
from lesionkg.model.ssbr.training import SSBRResult, rank_correlation, train_ssbr
from lesionkg.model.ssbr.volumes import (
    SliceStore,
    Volume,
    VolumeScan,
    group_starts,
    group_strides,
    list_slices,
    preprocess_slices,
    read_hu_slice,
    sample_group,
    scan_volumes,
)

__all__ = [
    "DIRECTION",
    "KIND",
    "LOSS_CURVE_FILE",
    "OPTIMIZER_FILE",
    "SSBRConfig",
    "SSBRModel",
    "SSBRNet",
    "SSBRResult",
    "SlicePrediction",
    "SliceStore",
    "Volume",
    "VolumeScan",
    "group_starts",
    "group_strides",
    "list_slices",
    "load_ssbr",
    "order_loss",
    "predict_slices",
    "preprocess_slices",
    "rank_correlation",
    "read_hu_slice",
    "sample_group",
    "scan_volumes",
    "spacing_loss",
    "ssbr_loss",
    "train_ssbr",
]
