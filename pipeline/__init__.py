"""The binaries (`python -m pipeline.<job>`): thin absl programs that build one
frozen config from their flags and call a library `run`.

Importing the package keeps TensorFlow's start-up noise off the console
(`console.py`); it runs before any binary imports TensorFlow.
"""

from pipeline import console

console.quiet_tensorflow_start()
