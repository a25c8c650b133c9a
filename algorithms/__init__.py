"""The algorithms, registered by name (`get`, `names`).

Importing the package imports every algorithm module, so the registry is
complete however it is reached.
"""

from algorithms import gans  # noqa: F401  (registers the sampling GANs)
from algorithms import translation  # noqa: F401  (registers pix2pix, cyclegan, unit)
from algorithms.base import (  # noqa: F401
    DIRECTIONS, INFERENCE_KINDS, SAMPLING, TRANSLATION, Algorithm, DataInfo, Phase,
    check_settings, get, names, register)
