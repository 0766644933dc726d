"""SYNTHETIC axial CT phantom: made-up bodies rendered in Hounsfield units, never real images.

A pure-NumPy, vectorised, seeded renderer of axial CT slices for the synthetic DeepLesion cohort
(:mod:`lesionkg.synthetic.cohort`). Nothing here comes from a real scan: the anatomy is a set of
smooth implicit shapes (superellipses, ellipsoids, capsules) whose sizes and positions follow
textbook proportions and the per-type lesion locations of the real ``DL_info_val.csv``.

Coordinates
    A slice is a function of normalised body position ``z`` in [0, 1] (the ``z`` of DeepLesion's
    ``Normalized_lesion_location``: 0 the vertex, 1 mid-thigh; ~0.34 lung apex, ~0.53 right
    diaphragm dome, ~0.6 liver, ~0.66 kidneys, ~0.79 pelvis) and of in-plane *reference pixels*
    ``X, Y``: the pixels of a 512 x 512 image relative to the body centre, where the generator's
    location-to-pixel map ``cx = 34.16 + 453.5 x``, ``cy = 82.44 + 348.4 y`` puts normalised
    ``x = y = 0.5``. ``X`` grows to the image right (the patient's left), ``Y`` to the back. A study
    shifts the whole body by its positioning offset. The body box is the same in pixels whatever
    the field of view (the reconstruction is assumed fitted to the body), so lesion sizes in mm
    come from the row's pixel spacing while the anatomy stays in pixels.

Anatomy (:class:`Anatomy`, drawn per patient, constant across the patient's studies)
    body width/height, subcutaneous fat and muscle thickness, diaphragm height, lung apex, liver,
    spleen, heart and bladder size, kidney height, vertebral phase and tissue HU. Structures: body
    outline (superellipse, flatter back), subcutaneous fat (~-100 HU), muscle (~50), thoracic
    cavity with lungs (~-850, denser posteriorly, vessel trees), mediastinum (fat ~-90) with heart,
    aorta (contrast ~130-210), venae cavae, trachea and bronchi, spine (vertebral bodies with
    cortex ~800 and marrow ~200-320, discs ~80, canal, posterior elements), ribs, sternum,
    clavicles, scapulae, humeral heads; below the diaphragm domes liver (~60-75), spleen (~50-60),
    stomach (fluid and air), kidneys (cortex ~130-205 with contrast, medulla, sinus fat), psoas,
    pancreas, small bowel (wall, fluid, sometimes gas) and colon (stool with gas bubbles) in
    mesenteric fat with small vessels; pelvic bones, femoral heads, bladder (~5-15); a CT table
    below the body. Contrast (aorta, kidney, liver enhancement) varies per study. Every slice
    gets a mild point-spread blur, so edges are smooth, and Gaussian noise (10 HU sd, seeded)
    inside the body; the air outside stays -1000.

Lesions (:class:`Lesions`)
    ellipsoids along the RECIST axes: in the key slice the section is exactly the row's long and
    short axis, crossing where the row's axes cross (four quarter-ellipses when the crossing is
    off-centre), and the z semi-axis is about half the short axis, so neighbouring slices show a
    smaller section. Appearance by (true) type: lung nodule 20-40 HU; liver lesion 10-30 HU,
    a third with an enhancing rim; kidney cyst 5-15 or solid 35-45; bone lytic 50-100 or
    sclerotic 750-900; lymph nodes (abdomen, mediastinum, pelvis, some soft tissue) 35-45 HU in a
    halo of fat; soft-tissue mass 25-38 HU (brighter than fat, darker than muscle).

:func:`labels_at` evaluates the organ map at arbitrary points (used by the generator to place
every lesion inside its organ); :func:`render_slice` draws a slice from the same map.

Modules: :mod:`~lesionkg.synthetic.phantom.anatomy` (labels, body parameters, z profiles),
:mod:`~lesionkg.synthetic.phantom.shapes` (implicit shapes),
:mod:`~lesionkg.synthetic.phantom.organs` (the organ map),
:mod:`~lesionkg.synthetic.phantom.lesions` (contrast, lesion appearance and geometry),
:mod:`~lesionkg.synthetic.phantom.decor` (vessels, bowel) and
:mod:`~lesionkg.synthetic.phantom.rendering` (HU slices, PNG).
"""

from lesionkg.synthetic.phantom.anatomy import (
    AIR,
    AIRWAY,
    BLADDER,
    BODY_CENTRE_PX,
    BODY_MM_PER_Z,
    CANAL,
    CORTEX,
    DISC,
    FAT,
    HEART,
    KIDNEY,
    LABEL_NAMES,
    LIVER,
    LUNG,
    MARROW,
    MEDIASTINUM,
    MUSCLE,
    PNG_OFFSET,
    PX_FROM_LOC,
    SPLEEN,
    STOMACH,
    TYPE_ORGANS,
    VESSEL,
    VISCERAL,
    Anatomy,
)
from lesionkg.synthetic.phantom.decor import Decor
from lesionkg.synthetic.phantom.lesions import (
    APPEARANCE_NAMES,
    BONE_LYTIC,
    BONE_SCLEROTIC,
    KIDNEY_CYST,
    KIDNEY_SOLID,
    LIVER_HYPO,
    LIVER_RIM,
    LUNG_NODULE,
    NODE,
    SOFT_MASS,
    Lesions,
    StudyLook,
    lesion_appearance,
)
from lesionkg.synthetic.phantom.organs import labels_at
from lesionkg.synthetic.phantom.rendering import SliceImage, hu_to_png16, render_slice, write_png16

__all__ = [
    "AIR",
    "AIRWAY",
    "APPEARANCE_NAMES",
    "BLADDER",
    "BODY_CENTRE_PX",
    "BODY_MM_PER_Z",
    "BONE_LYTIC",
    "BONE_SCLEROTIC",
    "CANAL",
    "CORTEX",
    "DISC",
    "FAT",
    "HEART",
    "KIDNEY",
    "KIDNEY_CYST",
    "KIDNEY_SOLID",
    "LABEL_NAMES",
    "LIVER",
    "LIVER_HYPO",
    "LIVER_RIM",
    "LUNG",
    "LUNG_NODULE",
    "MARROW",
    "MEDIASTINUM",
    "MUSCLE",
    "NODE",
    "PNG_OFFSET",
    "PX_FROM_LOC",
    "SOFT_MASS",
    "SPLEEN",
    "STOMACH",
    "TYPE_ORGANS",
    "VESSEL",
    "VISCERAL",
    "Anatomy",
    "Decor",
    "Lesions",
    "SliceImage",
    "StudyLook",
    "hu_to_png16",
    "labels_at",
    "lesion_appearance",
    "render_slice",
    "write_png16",
]
